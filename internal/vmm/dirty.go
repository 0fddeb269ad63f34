package vmm

import (
	"fmt"
	"math/bits"

	"github.com/bobuhiro11/gokvm/kvm"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"github.com/samsara-vmm/samsara/internal/snapshot"
)

// KVM's dirty log of guest RAM, for the serialized recorder's state stops
// (internal/session, det_stop.go): the pages the guest wrote since the
// last read. It needs KVM_MEM_LOG_DIRTY_PAGES, which every platform here
// has (PVM, and SVM with nested paging in the emulated host: the ept
// package's dirtylog backend is measured on both, ept/doc.go). It tracks
// writes the guest makes through KVM, not the VMM's own (device
// emulation), which replay makes again by itself.

// memFlagLogDirtyPages is KVM_MEM_LOG_DIRTY_PAGES (linux/kvm.h).
const memFlagLogDirtyPages = 1 << 0

// StartDirtyLog turns on KVM's dirty log for guest RAM's two memslots
// (of the machine's main VM) and clears it.
func (m *Machine) StartDirtyLog() error {
	if m.dirtyLog != nil {
		return nil
	}
	slots := m.mem.slots(memFlagLogDirtyPages)
	var bitmaps [][]uint64
	for i := range slots {
		if err := kvm.SetUserMemoryRegion(uintptr(m.vmFD), &slots[i]); err != nil {
			return fmt.Errorf("turn on the dirty log of memslot %d: %w", slots[i].Slot, err)
		}
		// One bit per page of the slot, in 64-bit words.
		bitmaps = append(bitmaps, make([]uint64, (slots[i].MemorySize/pageSize+63)/64))
	}
	m.dirtyLog = bitmaps
	_, err := m.DirtyPages()
	return err
}

// pageSize is the x86 base page, the dirty log's unit.
const pageSize = 4096

// DirtyPages returns the guest page numbers (GPA / 4 KiB, ascending) the
// guest wrote since the last call (or StartDirtyLog), and starts a new
// period. The serialized recorder calls it while no vCPU runs.
func (m *Machine) DirtyPages() ([]uint64, error) {
	if m.dirtyLog == nil {
		return nil, fmt.Errorf("DirtyPages before StartDirtyLog")
	}
	var pages []uint64
	for i, slot := range m.mem.slots(0) {
		bitmap := m.dirtyLog[i]
		clear(bitmap)
		if err := kvmsys.GetDirtyLog(m.vmFD, slot.Slot, bitmap); err != nil {
			return nil, err
		}
		first := slot.GuestPhysAddr / pageSize
		for j, w := range bitmap {
			for w != 0 {
				b := bits.TrailingZeros64(w)
				w &^= 1 << b
				pages = append(pages, first+uint64(j*64+b))
			}
		}
	}
	return pages, nil
}

// ForgetTranslations makes KVM drop every translation it built from
// guest memory: its shadow page tables (PVM shadows the guest's page
// tables, and trusts a shadowed page to change only through a guest write
// it traps) and the guest TLB. Needed after the VMM itself wrote guest
// page tables, as replay does at a state stop. KVM has no ioctl for it;
// deleting a memslot zaps everything built from it, so both RAM slots
// are deleted and made again, with the flags they had. No vCPU may be in
// KVM_RUN.
func (m *Machine) ForgetTranslations() error {
	var flags uint32
	if m.dirtyLog != nil {
		flags = memFlagLogDirtyPages
	}
	for _, slot := range m.mem.slots(flags) {
		del := slot
		del.MemorySize = 0
		if err := kvm.SetUserMemoryRegion(uintptr(m.vmFD), &del); err != nil {
			return fmt.Errorf("delete memslot %d: %w", slot.Slot, err)
		}
		if err := kvm.SetUserMemoryRegion(uintptr(m.vmFD), &slot); err != nil {
			return fmt.Errorf("make memslot %d again: %w", slot.Slot, err)
		}
	}
	return nil
}

// EncodeArch is an architectural state as bytes (the checkpoint's binary
// vCPU record, internal/snapshot), for a recording's state stops.
func EncodeArch(s *ArchState) ([]byte, error) {
	return toSnapshotVCPU(s).MarshalBinary()
}

// DecodeArch reads EncodeArch's bytes back.
func DecodeArch(b []byte) (ArchState, error) {
	var v snapshot.VCPU
	if err := v.UnmarshalBinary(b); err != nil {
		return ArchState{}, err
	}
	return fromSnapshotVCPU(&v)
}
