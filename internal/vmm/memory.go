package vmm

import (
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"io"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Guest-physical memory layout. Guest RAM is one memfd (canonical memory;
// the parallel recorder will map private views of it per vCPU), mapped
// shared into the VMM and registered as two memslots with a hole for the
// legacy 640K-1M region, where the control page lives (see control.go).
const (
	// lowMemEnd is the end of "base memory" (640 KiB, the PC convention
	// Linux expects for the real-mode trampoline and the MP table scan).
	lowMemEnd = 0xA0000
	// highMemStart is where RAM resumes after the legacy hole.
	highMemStart = 0x100000
	// mpTableAddr is the last KiB of base memory, one of the places
	// Linux's smp_scan_config searches (MP spec 1.4, section 4).
	mpTableAddr = 0x9FC00
	// minMemBytes: the 6.1 tinyconfig kernel needs ~24 MiB to unpack and
	// run init; below 32 MiB it panics with out-of-memory during boot.
	minMemBytes = 32 << 20
	// maxMemBytes: one PML4 entry of identity map covers 512 GiB, far more
	// than this; the bound is the 32-bit e820 size fields we fill plus the
	// MMIO window at 0xC0000000-0xFFFFFFFF (RAM must end below it).
	maxMemBytes = 0xC0000000
)

// guestMemory is the guest's RAM: a memfd mapped shared into the VMM.
type guestMemory struct {
	// fd is the memfd backing guest RAM (canonical memory).
	fd int
	// mem is the shared mapping; mem[gpa] is guest-physical address gpa.
	mem []byte
}

func newGuestMemory(size uint64) (*guestMemory, error) {
	if size < minMemBytes {
		return nil, fmt.Errorf("guest memory %d MiB is too small: at least %d MiB needed", size>>20, minMemBytes>>20)
	}
	if size > maxMemBytes {
		return nil, fmt.Errorf("guest memory %d MiB is too large: at most %d MiB (RAM must end below the 3 GiB MMIO window)", size>>20, maxMemBytes>>20)
	}
	fd, err := unix.MemfdCreate("samsara-guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size guest memory: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map guest memory: %w", err)
	}
	return &guestMemory{fd: fd, mem: mem}, nil
}

// slots are the two RAM memslots, slot i in element i, with flags
// (KVM_MEM_*).
func (g *guestMemory) slots(flags uint32) []kvm.UserspaceMemoryRegion {
	base := uint64(uintptr(kvmsys.AddressOf(g.mem)))
	return []kvm.UserspaceMemoryRegion{
		{Slot: 0, Flags: flags, GuestPhysAddr: 0, MemorySize: lowMemEnd, UserspaceAddr: base},
		{Slot: 1, Flags: flags, GuestPhysAddr: highMemStart, MemorySize: uint64(len(g.mem)) - highMemStart, UserspaceAddr: base + highMemStart},
	}
}

// register installs the two RAM memslots in a VM.
func (g *guestMemory) register(vmFD int) error {
	slots := g.slots(0)
	for i := range slots {
		if err := kvm.SetUserMemoryRegion(uintptr(vmFD), &slots[i]); err != nil {
			return fmt.Errorf("set memslot %d: %w", slots[i].Slot, err)
		}
	}
	return nil
}

// isRAM reports whether gpa is backed by a memslot.
func (g *guestMemory) isRAM(gpa uint64) bool {
	return gpa < lowMemEnd || (gpa >= highMemStart && gpa < uint64(len(g.mem)))
}

func (g *guestMemory) close() {
	if g.mem != nil {
		unix.Munmap(g.mem)
		g.mem = nil
	}
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

// hashInto writes guest memory to h, byte for byte as h.Write(g.mem)
// would, without reading the memfd's holes (pages the guest never
// touched) through the mapping: a read fault on a shared memfd hole
// allocates the page, so hashing the mapping made every digest allocate
// all of guest RAM (peak RSS of record and replay = RAM size). Holes are
// found with lseek SEEK_DATA/SEEK_HOLE (lseek(2)) and hashed as zeros.
func (g *guestMemory) hashInto(h io.Writer) error {
	var zeros [64 << 10]byte
	writeZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	size := int64(len(g.mem))
	off := int64(0)
	for off < size {
		data, err := unix.Seek(g.fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO { // no data after off
			break
		}
		if err != nil {
			return fmt.Errorf("lseek SEEK_DATA on guest memory: %w", err)
		}
		hole, err := unix.Seek(g.fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("lseek SEEK_HOLE on guest memory: %w", err)
		}
		data, hole = min(data, size), min(hole, size)
		writeZeros(data - off)
		h.Write(g.mem[data:hole])
		off = hole
	}
	writeZeros(size - off)
	return nil
}
