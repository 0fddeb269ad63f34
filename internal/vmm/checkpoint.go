package vmm

// Checkpoints: the whole machine (guest memory, every vCPU's registers,
// FPU, MSRs and pending events, every device) saved at a point the guest
// asks for (the control page's checkpoint request, made by the reference
// init when it starts), so tests and recordings skip the minutes-long
// emulated boot.
//
// File layout (little-endian):
//
//	magic    "SAMSARA-CKPT\x00\x00\x00\x00" (16 bytes)
//	version  uint32 (checkpointVersion)
//	body     zstd stream of: gob(checkpointMeta), then for every non-zero
//	         4 KiB page of guest RAM: uint64 page number + 4096 bytes,
//	         ended by page number 2^64-1
//	digest   SHA-256 of everything before it (32 bytes)
//
// The digest lets a recording name the checkpoint it starts from and lets
// a damaged file be rejected before anything is restored.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/klauspost/compress/zstd"

	"github.com/samsara-vmm/samsara/internal/chunk"
)

// checkpointVersion is bumped whenever checkpointMeta, a device state
// struct or the body layout changes incompatibly.
const checkpointVersion = 1

var checkpointMagic = [16]byte{'S', 'A', 'M', 'S', 'A', 'R', 'A', '-', 'C', 'K', 'P', 'T'}

// ErrBadCheckpoint is a checkpoint file that is not one, or is damaged.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// endOfPages terminates the page list.
const endOfPages = ^uint64(0)

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
	LAPICs   []LAPICState
	IOAPIC   IOAPICState
	PIT      PITState
	UART     UARTState
	RTC      RTCState
	PIC      PICState
	Virtio   *VirtioState
	Overlay  *OverlayState
	// Marks: kernel addresses for the parallel recorder (boot.go); zero in
	// checkpoints saved before they existed, which only turns the
	// recorder's privilege-change chunk ends off.
	Marks chunk.Marks
	// Spins: the serialized recorder's spin functions (det_spin.go);
	// none in older checkpoints, which turns the spin checks off.
	Spins []KernelRange
}

// checkpointBarrier is called by each vCPU loop while a checkpoint is
// pending. Every vCPU completes its in-flight I/O and parks; the last one
// to arrive saves the machine and releases the others.
func (m *Machine) checkpointBarrier(v *vcpu) error {
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
		IOAPIC: m.ioapic.Snapshot(), PIT: m.pit.Snapshot(), UART: m.uart.Snapshot(), RTC: m.rtc.Snapshot(), PIC: PICState{Chips: m.pic.chips},
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
		if o, ok := m.blk.Backend().(*Overlay); ok {
			ovl := o.Snapshot()
			meta.Overlay = &ovl
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ckpt-*")
	if err != nil {
		return fmt.Errorf("create checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	var hdr [20]byte
	copy(hdr[:], checkpointMagic[:])
	binary.LittleEndian.PutUint32(hdr[16:], checkpointVersion)
	w.Write(hdr[:])
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		tmp.Close()
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	if err := gob.NewEncoder(bw).Encode(&meta); err != nil {
		tmp.Close()
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	mem := m.mem.mem
	var zero [4096]byte
	var pn [8]byte
	for p := 0; p+4096 <= len(mem); p += 4096 {
		page := mem[p : p+4096]
		if bytes.Equal(page, zero[:]) {
			continue
		}
		binary.LittleEndian.PutUint64(pn[:], uint64(p/4096))
		bw.Write(pn[:])
		bw.Write(page)
	}
	binary.LittleEndian.PutUint64(pn[:], endOfPages)
	bw.Write(pn[:])
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if _, err := tmp.Write(h.Sum(nil)); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// snapshot reads the vCPU's architectural state.
func (v *vcpu) snapshot() (vcpuSnapshot, error) {
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
func (v *vcpu) restore(s *vcpuSnapshot) error {
	if err := v.restoreArch(s); err != nil {
		return err
	}
	v.state = s.State
	return nil
}

// restoreArch writes a snapshot's KVM state back (not the run-loop state).
func (v *vcpu) restoreArch(s *vcpuSnapshot) error {
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
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if len(raw) < 20+32 || !bytes.Equal(raw[:16], checkpointMagic[:]) {
		return fmt.Errorf("%s: %w: not a samsara checkpoint", path, ErrBadCheckpoint)
	}
	if v := binary.LittleEndian.Uint32(raw[16:]); v != checkpointVersion {
		return fmt.Errorf("%s: %w: format version %d, this samsara reads version %d", path, ErrBadCheckpoint, v, checkpointVersion)
	}
	body, digest := raw[:len(raw)-32], raw[len(raw)-32:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], digest) {
		return fmt.Errorf("%s: %w: SHA-256 mismatch (truncated or corrupted)", path, ErrBadCheckpoint)
	}
	zr, err := zstd.NewReader(bytes.NewReader(body[20:]))
	if err != nil {
		return fmt.Errorf("%s: %w: %v", path, ErrBadCheckpoint, err)
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 1<<20)
	var meta checkpointMeta
	if err := gob.NewDecoder(br).Decode(&meta); err != nil {
		return fmt.Errorf("%s: %w: metadata: %v", path, ErrBadCheckpoint, err)
	}
	if len(meta.VCPUs) != meta.CPUs || len(meta.LAPICs) != meta.CPUs {
		return fmt.Errorf("%s: %w: %d vCPU states for %d CPUs", path, ErrBadCheckpoint, len(meta.VCPUs), meta.CPUs)
	}
	// The machine's shape comes from the checkpoint; a conflicting flag is
	// a user error, not something to silently override.
	if m.cfg.CPUs != meta.CPUs {
		return fmt.Errorf("checkpoint %s has %d vCPUs but --cpus is %d", path, meta.CPUs, m.cfg.CPUs)
	}
	if meta.HasDisk != (m.cfg.Disk != "") {
		return fmt.Errorf("checkpoint %s was taken with%s a disk; pass the same --vm", path, map[bool]string{true: "", false: "out"}[meta.HasDisk])
	}
	m.cfg.Mem = meta.Mem
	if err := m.build(); err != nil {
		return err
	}
	m.cmdline = meta.Cmdline
	m.marks, m.spins = meta.Marks, meta.Spins
	mem := m.mem.mem
	var pn [8]byte
	for {
		if _, err := io.ReadFull(br, pn[:]); err != nil {
			return fmt.Errorf("%s: %w: memory: %v", path, ErrBadCheckpoint, err)
		}
		p := binary.LittleEndian.Uint64(pn[:])
		if p == endOfPages {
			break
		}
		if p >= uint64(len(mem))/4096 {
			return fmt.Errorf("%s: %w: page %d beyond guest memory", path, ErrBadCheckpoint, p)
		}
		if _, err := io.ReadFull(br, mem[p*4096:(p+1)*4096]); err != nil {
			return fmt.Errorf("%s: %w: memory: %v", path, ErrBadCheckpoint, err)
		}
	}
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
	m.pic.chips = meta.PIC.Chips
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
			if o, ok := m.blk.Backend().(*Overlay); ok && meta.Overlay != nil {
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
