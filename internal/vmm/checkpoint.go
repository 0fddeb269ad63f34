package vmm

// Checkpoints: the whole machine (guest memory, every vCPU's registers,
// FPU, MSRs and pending events, every device) saved at a point the guest
// asks for (the control page's checkpoint request, made by the reference
// init when it starts), so tests and recordings skip the minutes-long
// emulated boot.
//
// File layout, format version 2 (little-endian; checkpoint_v2.go):
//
//	0     magic    "SAMSARA-CKPT\x00\x00\x00\x00" (16 bytes)
//	16    version  uint32 = 2
//	20    flags    uint32, 0
//	24    metaLen  uint64, at most maxCheckpointMeta
//	32    nRuns    uint64, runs of stored pages
//	40    nPages   uint64, stored pages (the sum of the runs' counts)
//	48    dataOff  uint64 = 64+metaLen+16*nRuns rounded up to 4096
//	56    reserved uint64, 0
//	64    meta     gob(checkpointMeta), metaLen bytes
//	      runs     nRuns x {first page number uint64, page count uint64},
//	               ascending, not overlapping, within guest RAM
//	      zeros up to dataOff
//	dataOff pages  the runs' pages, 4096 bytes each, uncompressed, in
//	               run order (every non-zero 4 KiB page of guest RAM; the
//	               others are zero)
//	end-32 digest  the tree digest of everything before it
//	               (checkpoint_hash.go: SHA-256 of the XXH64 of each 1 MiB)
//
// Version 1 (checkpoint_v1.go; still read, and written only for the
// resume benchmark): magic, version uint32 = 1, then a zstd stream of
// gob(checkpointMeta) and, for every non-zero page, uint64 page number +
// 4096 bytes, ended by page number 2^64-1; then the SHA-256 of everything
// before it.
//
// Version 2 exists because resuming from version 1 took 9-10 s inside the
// emulated SVM host, where samsara runs under QEMU TCG: SHA-256 and zstd
// are 10-100x slower there. Version 2 reads the pages straight into guest
// memory (one read per 1 MiB, no decompression) and hashes them once with
// a hash that stays fast under TCG.
//
// The digest lets a recording name the checkpoint it starts from
// (CheckpointID) and lets a damaged file be rejected before anything is
// restored.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// checkpointVersion is the format version samsara writes. Bump this when
// checkpointMeta, a device state struct or the file layout changes
// incompatibly (and keep reading the older version if recordings or
// cached checkpoints made with it should still load; readCheckpoint).
// Version 1 was zstd+SHA-256; 2 is uncompressed, page-aligned pages with
// the XXH64/SHA-256 tree digest.
const checkpointVersion = 2

var checkpointMagic = [16]byte{'S', 'A', 'M', 'S', 'A', 'R', 'A', '-', 'C', 'K', 'P', 'T'}

// ErrBadCheckpoint is a checkpoint file that is not one, or is damaged.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// savedMSRs are the MSRs Linux sets that KVM_GET_SREGS does not cover.
var savedMSRs = []uint32{
	0x174, 0x175, 0x176, // IA32_SYSENTER_CS/ESP/EIP
	0x277,      // IA32_PAT
	0xC0000081, // STAR
	0xC0000082, // LSTAR
	0xC0000083, // CSTAR
	0xC0000084, // SFMASK
	0xC0000102, // KERNEL_GS_BASE
}

// vcpuSnapshot is one vCPU's architectural state.
type vcpuSnapshot struct {
	Regs  kvm.Regs
	Sregs kvm.Sregs
	FPU   fpu
	// Xsave is the whole FPU/SSE state (KVM_GET_XSAVE); FPU alone does
	// not round-trip on these hosts (kvm_unsafe.go, kvmXsave).
	Xsave  *kvmXsave
	MSRs   map[uint32]uint64
	Events kvm.VCPUEvents
	State  vcpuState
}

// checkpointMeta is everything but guest RAM.
type checkpointMeta struct {
	CPUs     int
	Mem      uint64
	Cmdline  string
	HasDisk  bool
	GuestNow int64
	VCPUs    []vcpuSnapshot
	// The device states are internal/devices' snapshot structs. gob
	// matches struct fields by name, so those keep their field names and
	// types; the element type names gob writes for slices and arrays of
	// them ("[]devices.LAPICState", "[2]devices.picChip"; "vmm." before
	// the devices moved) are not checked when decoding, so checkpoints
	// from before the move still load.
	LAPICs  []devices.LAPICState
	IOAPIC  devices.IOAPICState
	PIT     devices.PITState
	UART    devices.UARTState
	RTC     devices.RTCState
	PIC     devices.PICState
	Virtio  *devices.VirtioState
	Overlay *devices.OverlayState
	// Marks: kernel addresses for the parallel recorder (boot.go); zero in
	// checkpoints saved before they existed, which only turns the
	// recorder's privilege-change chunk ends off.
	Marks KernelMarks
	// Spins: the serialized recorder's spin functions (det_spin.go);
	// none in older checkpoints, which turns the spin checks off.
	Spins []KernelRange
}

// checkpointBarrier is called by each vCPU loop while a checkpoint is
// pending. Every vCPU completes its in-flight I/O and parks; the last one
// to arrive saves the machine and releases the others.
func (m *Machine) checkpointBarrier(v *VCPU) error {
	if v.state != stateWaitSIPI {
		// KVM_RUN with immediate_exit completes a pending MMIO/PIO exit
		// without entering the guest (api.rst, "immediate_exit").
		setImmediateExit(v.run, true)
		if err := runVCPU(v.fd); err != nil && err != errInterrupted {
			return fmt.Errorf("complete pending I/O before checkpoint: %w", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ckptArrived++
	if m.ckptArrived == len(m.vcpus) {
		m.ckptErr = m.saveCheckpointLocked(m.cfg.SaveCheckpoint)
		m.ckptPending, m.ckptDone, m.ckptArrived = false, true, 0
		m.ckptCond.Broadcast()
	} else {
		for m.ckptPending && !m.isStopped() {
			m.ckptCond.Wait()
		}
	}
	return m.ckptErr
}

// isStopped reports whether the machine has stopped.
func (m *Machine) isStopped() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

// saveCheckpointLocked writes the checkpoint file atomically.
// Preconditions: m.mu must be held and every vCPU parked.
func (m *Machine) saveCheckpointLocked(path string) error {
	meta := checkpointMeta{
		CPUs: m.cfg.CPUs, Mem: m.cfg.Mem, Cmdline: m.cmdline, HasDisk: m.blk != nil,
		GuestNow: m.clock.Now(), Marks: m.marks, Spins: m.spins,
		IOAPIC: m.ioapic.Snapshot(), PIT: m.pit.Snapshot(), UART: m.uart.Snapshot(), RTC: m.rtc.Snapshot(), PIC: m.pic.Snapshot(),
	}
	for _, v := range m.vcpus {
		s, err := v.snapshot()
		if err != nil {
			return fmt.Errorf("checkpoint vcpu %d: %w", v.id, err)
		}
		meta.VCPUs = append(meta.VCPUs, s)
		meta.LAPICs = append(meta.LAPICs, m.bus.LAPIC(v.id).Snapshot())
	}
	if m.blk != nil {
		vs := m.blk.Snapshot()
		meta.Virtio = &vs
		if o, ok := m.blk.Backend().(*devices.Overlay); ok {
			ovl := o.Snapshot()
			meta.Overlay = &ovl
		}
	}
	return writeCheckpointFile(path, &meta, m.mem.mem, m.mem.fd, checkpointVersion)
}

// writeCheckpointFile writes meta and the non-zero pages of mem to path
// atomically (a temporary file renamed into place) in the given format
// version. memFD, when not -1, is the memfd behind mem, whose holes are
// skipped without reading them (memory.go, hashInto).
func writeCheckpointFile(path string, meta *checkpointMeta, mem []byte, memFD int, version uint32) error {
	runs, err := nonZeroRuns(mem, memFD)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ckpt-*")
	if err != nil {
		return fmt.Errorf("create checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	switch version {
	case 1:
		err = writeCheckpointV1(tmp, meta, mem, runs)
	case 2:
		err = writeCheckpointV2(tmp, meta, mem, runs)
	default:
		err = fmt.Errorf("no checkpoint format version %d", version)
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// pageRun is a run of consecutive non-zero guest pages.
type pageRun struct {
	First, Count uint64 // first page number, number of pages
}

// nonZeroRuns returns the runs of non-zero 4 KiB pages of mem, ascending.
// With a memfd (memFD != -1) only its data ranges are read (lseek
// SEEK_DATA/SEEK_HOLE): reading a hole through the shared mapping would
// allocate it.
func nonZeroRuns(mem []byte, memFD int) ([]pageRun, error) {
	var runs []pageRun
	var zero [4096]byte
	scan := func(from, to int64) {
		for p := from &^ 4095; p+4096 <= to; p += 4096 {
			if bytes.Equal(mem[p:p+4096], zero[:]) {
				continue
			}
			pn := uint64(p / 4096)
			if n := len(runs); n > 0 && runs[n-1].First+runs[n-1].Count == pn {
				runs[n-1].Count++
			} else {
				runs = append(runs, pageRun{First: pn, Count: 1})
			}
		}
	}
	size := int64(len(mem)) &^ 4095
	if memFD == -1 {
		scan(0, size)
		return runs, nil
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(memFD, off, unix.SEEK_DATA)
		if err == unix.ENXIO { // no data after off
			break
		}
		if err != nil {
			return nil, fmt.Errorf("lseek SEEK_DATA on guest memory: %w", err)
		}
		hole, err := unix.Seek(memFD, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("lseek SEEK_HOLE on guest memory: %w", err)
		}
		hole = min((hole+4095)&^4095, size)
		scan(max(data, off), hole)
		off = hole
	}
	return runs, nil
}

// snapshot reads the vCPU's architectural state.
func (v *VCPU) snapshot() (vcpuSnapshot, error) {
	var s vcpuSnapshot
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return s, fmt.Errorf("regs: %w", err)
	}
	sregs, err := kvm.GetSregs(uintptr(v.fd))
	if err != nil {
		return s, fmt.Errorf("sregs: %w", err)
	}
	f, err := getFPU(v.fd)
	if err != nil {
		return s, fmt.Errorf("fpu: %w", err)
	}
	if s.Xsave, err = getXsave(v.fd); err != nil {
		return s, err
	}
	if err := kvm.GetVCPUEvents(uintptr(v.fd), &s.Events); err != nil {
		return s, fmt.Errorf("events: %w", err)
	}
	if s.MSRs, err = getMSRs(v.fd, savedMSRs); err != nil {
		return s, err
	}
	s.Regs, s.Sregs, s.FPU, s.State = *regs, *sregs, *f, v.state
	return s, nil
}

// restore writes a snapshot back into the vCPU.
func (v *VCPU) restore(s *vcpuSnapshot) error {
	if err := v.restoreArch(s); err != nil {
		return err
	}
	v.state = s.State
	return nil
}

// restoreArch writes a snapshot's KVM state back (not the run-loop state).
func (v *VCPU) restoreArch(s *vcpuSnapshot) error {
	if err := kvm.SetSregs(uintptr(v.fd), &s.Sregs); err != nil {
		return fmt.Errorf("sregs: %w", err)
	}
	if err := kvm.SetRegs(uintptr(v.fd), &s.Regs); err != nil {
		return fmt.Errorf("regs: %w", err)
	}
	if s.Xsave != nil {
		if err := setXsave(v.fd, s.Xsave); err != nil {
			return err
		}
	} else if err := setFPU(v.fd, &s.FPU); err != nil {
		return fmt.Errorf("fpu: %w", err)
	}
	if err := setMSRs(v.fd, s.MSRs); err != nil {
		return err
	}
	if err := kvm.SetVCPUEvents(uintptr(v.fd), &s.Events); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return nil
}

// restoreFromFile builds the machine from a checkpoint file.
func (m *Machine) restoreFromFile(path string) error {
	meta, err := readCheckpoint(path, func(meta *checkpointMeta) ([]byte, error) {
		if len(meta.VCPUs) != meta.CPUs || len(meta.LAPICs) != meta.CPUs {
			return nil, fmt.Errorf("%s: %w: %d vCPU states for %d CPUs", path, ErrBadCheckpoint, len(meta.VCPUs), meta.CPUs)
		}
		// The machine's shape comes from the checkpoint; a conflicting flag
		// is a user error, not something to silently override.
		if m.cfg.CPUs != meta.CPUs {
			return nil, fmt.Errorf("checkpoint %s has %d vCPUs but --cpus is %d", path, meta.CPUs, m.cfg.CPUs)
		}
		if meta.HasDisk != (m.cfg.Disk != "") {
			return nil, fmt.Errorf("checkpoint %s was taken with%s a disk; pass the same --vm", path, map[bool]string{true: "", false: "out"}[meta.HasDisk])
		}
		m.cfg.Mem = meta.Mem
		if err := m.build(); err != nil {
			return nil, err
		}
		return m.mem.mem, nil
	})
	if err != nil {
		return err
	}
	m.cmdline = meta.Cmdline
	m.marks, m.spins = meta.Marks, meta.Spins
	m.clock.set(meta.GuestNow)
	for i, v := range m.vcpus {
		if err := v.restore(&meta.VCPUs[i]); err != nil {
			return fmt.Errorf("restore vcpu %d: %w", i, err)
		}
		r := *v.resetSregs
		r.ApicBase = lapicAddr | apicBaseEnable
		v.resetSregs = &r
		if err := m.bus.LAPIC(i).Restore(meta.LAPICs[i]); err != nil {
			return fmt.Errorf("%s: %w: lapic %d: %v", path, ErrBadCheckpoint, i, err)
		}
	}
	m.pic.Restore(meta.PIC)
	for name, restore := range map[string]func() error{
		"ioapic": func() error { return m.ioapic.Restore(meta.IOAPIC) },
		"pit":    func() error { return m.pit.Restore(meta.PIT) },
		"uart":   func() error { return m.uart.Restore(meta.UART) },
		"rtc":    func() error { return m.rtc.Restore(meta.RTC) },
		"virtio": func() error {
			if m.blk == nil || meta.Virtio == nil {
				return nil
			}
			if err := m.blk.Restore(*meta.Virtio); err != nil {
				return err
			}
			if o, ok := m.blk.Backend().(*devices.Overlay); ok && meta.Overlay != nil {
				return o.Restore(*meta.Overlay)
			}
			return nil
		},
	} {
		if err := restore(); err != nil {
			return fmt.Errorf("%s: %w: %s: %v", path, ErrBadCheckpoint, name, err)
		}
	}
	// The guest's init asked for this checkpoint; it will not ask again.
	m.ckptDone = true
	return nil
}

// readCheckpoint reads and verifies the checkpoint file at path, in any
// format version this samsara reads. alloc is called once the metadata is
// decoded and returns the guest memory to fill (all zero, meta.Mem bytes);
// its errors are returned as they are. A file that is not a checkpoint or
// is damaged is an ErrBadCheckpoint, detected before readCheckpoint
// returns, but possibly after alloc's memory was written.
func readCheckpoint(path string, alloc func(*checkpointMeta) ([]byte, error)) (*checkpointMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var hdr [20]byte
	if st.Size() < 20+32 {
		return nil, fmt.Errorf("%s: %w: not a samsara checkpoint", path, ErrBadCheckpoint)
	}
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !bytes.Equal(hdr[:16], checkpointMagic[:]) {
		return nil, fmt.Errorf("%s: %w: not a samsara checkpoint", path, ErrBadCheckpoint)
	}
	switch v := binary.LittleEndian.Uint32(hdr[16:]); v {
	case 1:
		return readCheckpointV1(path, f, st.Size(), alloc)
	case 2:
		return readCheckpointV2(path, f, st.Size(), alloc)
	default:
		return nil, fmt.Errorf("%s: %w: format version %d, this samsara reads versions 1 and %d", path, ErrBadCheckpoint, v, checkpointVersion)
	}
}

// ConvertCheckpoint rewrites the checkpoint src as dst in format version
// 1 or 2 (checkpointVersion), verifying src. It exists for the resume
// benchmark (tests/bench resume), which compares the formats; samsara
// itself always writes checkpointVersion.
func ConvertCheckpoint(src, dst string, version uint32) error {
	var mem []byte
	meta, err := readCheckpoint(src, func(meta *checkpointMeta) ([]byte, error) {
		if meta.Mem < minMemBytes || meta.Mem > maxMemBytes || meta.Mem%4096 != 0 {
			return nil, fmt.Errorf("%s: %w: guest memory size %d", src, ErrBadCheckpoint, meta.Mem)
		}
		mem = make([]byte, meta.Mem)
		return mem, nil
	})
	if err != nil {
		return err
	}
	return writeCheckpointFile(dst, meta, mem, -1, version)
}
