package vmm

// Checkpoints: the whole machine (guest memory, every vCPU's registers,
// FPU, MSRs and pending events, every device) saved at a point the guest
// asks for (the control page's checkpoint request, made by the reference
// init when it starts), so tests and recordings skip the minutes-long
// emulated boot.
//
// The file format (layout, versions, digest, size limits) and its state
// structs are internal/snapshot's, so that a gokvm update cannot change
// the file; this file takes the machine's state and converts it to
// snapshot's structs and back (the to/fromSnapshot functions at the end
// of this file, the one place that knows both).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"os"
	"path/filepath"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/devices"
	"github.com/samsara-vmm/samsara/internal/snapshot"
)

// checkpointVersion is the format version samsara writes (the rules for
// bumping it are internal/snapshot's).
const checkpointVersion = snapshot.Version

// ErrBadCheckpoint matches (errors.Is) a checkpoint file that is not one,
// is damaged, or is in a version this samsara does not read: a
// *snapshot.Error, whose Kind says which.
var ErrBadCheckpoint = snapshot.ErrBad

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
	FPU   kvmsys.FPU
	// Xsave is the whole FPU/SSE state (KVM_GET_XSAVE); FPU alone does
	// not round-trip on these hosts (internal/kvm, Xsave).
	Xsave  *kvmsys.Xsave
	MSRs   map[uint32]uint64
	Events kvm.VCPUEvents
	State  vcpuState
}

// checkpointBarrier is called by each vCPU loop while a checkpoint is
// pending. Every vCPU completes its in-flight I/O and parks; the last one
// to arrive saves the machine and releases the others.
func (m *Machine) checkpointBarrier(v *VCPU) error {
	if v.state != stateWaitSIPI {
		// KVM_RUN with immediate_exit completes a pending MMIO/PIO exit
		// without entering the guest (api.rst, "immediate_exit").
		kvmsys.SetImmediateExit(v.run, true)
		if err := kvmsys.Run(v.fd); err != nil && err != kvmsys.ErrInterrupted {
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
	meta := snapshot.Meta{
		CPUs: m.cfg.CPUs, Mem: m.cfg.Mem, Cmdline: m.cmdline, HasDisk: m.blk != nil,
		GuestNow: m.clock.Now(), Marks: toSnapshotMarks(m.marks), Spins: toSnapshotRanges(m.spins),
		IOAPIC: m.ioapic.Snapshot(), PIT: m.pit.Snapshot(), UART: m.uart.Snapshot(), RTC: m.rtc.Snapshot(), PIC: m.pic.Snapshot(),
	}
	for _, v := range m.vcpus {
		s, err := v.snapshot()
		if err != nil {
			return fmt.Errorf("checkpoint vcpu %d: %w", v.id, err)
		}
		meta.VCPUs = append(meta.VCPUs, toSnapshotVCPU(&s))
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
func writeCheckpointFile(path string, meta *snapshot.Meta, mem []byte, memFD int, version uint32) error {
	runs, err := nonZeroRuns(mem, memFD)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ckpt-*")
	if err != nil {
		return fmt.Errorf("create checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := snapshot.Write(tmp, meta, mem, runs, version); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// nonZeroRuns returns the runs of non-zero 4 KiB pages of mem, ascending.
// With a memfd (memFD != -1) only its data ranges are read (lseek
// SEEK_DATA/SEEK_HOLE): reading a hole through the shared mapping would
// allocate it.
func nonZeroRuns(mem []byte, memFD int) ([]snapshot.Run, error) {
	var runs []snapshot.Run
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
				runs = append(runs, snapshot.Run{First: pn, Count: 1})
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
	f, err := kvmsys.GetFPU(v.fd)
	if err != nil {
		return s, fmt.Errorf("fpu: %w", err)
	}
	if s.Xsave, err = kvmsys.GetXsave(v.fd); err != nil {
		return s, err
	}
	if err := kvm.GetVCPUEvents(uintptr(v.fd), &s.Events); err != nil {
		return s, fmt.Errorf("events: %w", err)
	}
	if s.MSRs, err = kvmsys.GetMSRs(v.fd, savedMSRs); err != nil {
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
		if err := kvmsys.SetXsave(v.fd, s.Xsave); err != nil {
			return err
		}
	} else if err := kvmsys.SetFPU(v.fd, &s.FPU); err != nil {
		return fmt.Errorf("fpu: %w", err)
	}
	if err := kvmsys.SetMSRs(v.fd, s.MSRs); err != nil {
		return err
	}
	if err := kvm.SetVCPUEvents(uintptr(v.fd), &s.Events); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return nil
}

// restoreFromFile builds the machine from a checkpoint file.
func (m *Machine) restoreFromFile(path string) error {
	meta, err := readCheckpoint(path, func(meta *snapshot.Meta) ([]byte, error) {
		// (snapshot.Read checked that there is a vCPU and LAPIC state
		// for each vCPU.) The machine's shape comes from the checkpoint; a conflicting flag
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
	m.marks, m.spins = fromSnapshotMarks(meta.Marks), fromSnapshotRanges(meta.Spins)
	m.clock.set(meta.GuestNow)
	for i, v := range m.vcpus {
		s, err := fromSnapshotVCPU(&meta.VCPUs[i])
		if err != nil {
			return fmt.Errorf("%s: %w: vcpu %d: %v", path, ErrBadCheckpoint, i, err)
		}
		if err := v.restore(&s); err != nil {
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

// readCheckpoint reads and verifies the checkpoint file at path
// (snapshot.Read: any format version this samsara reads). alloc returns
// the guest memory to fill; its errors are returned as they are. A file
// that is not a checkpoint or is damaged is a *snapshot.Error
// (ErrBadCheckpoint) naming path.
func readCheckpoint(path string, alloc func(*snapshot.Meta) ([]byte, error)) (*snapshot.Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	meta, err := snapshot.Read(f, st.Size(), alloc)
	if se := (*snapshot.Error)(nil); errors.As(err, &se) {
		se.Path = path
	}
	return meta, err
}

// ConvertCheckpoint rewrites the checkpoint src as dst in format version
// 1, 2 or 3 (checkpointVersion), verifying src. It exists for the resume
// benchmark (tests/bench resume), which compares the formats; samsara
// itself always writes checkpointVersion.
func ConvertCheckpoint(src, dst string, version uint32) error {
	var mem []byte
	meta, err := readCheckpoint(src, func(meta *snapshot.Meta) ([]byte, error) {
		if meta.Mem < minMemBytes || meta.Mem > maxMemBytes {
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

// The conversions between the machine's state (gokvm's and vmm's types)
// and internal/snapshot's structs: field by field, so that a gokvm update
// or a vmm change shows up here, at compile time or in review, and never
// silently in the file.

func toSnapshotVCPU(s *vcpuSnapshot) snapshot.VCPU {
	v := snapshot.VCPU{
		Regs:   snapshot.Regs(s.Regs), // identical fields: a gokvm change fails to compile here
		Sregs:  toSnapshotSregs(&s.Sregs),
		FPU:    toSnapshotFPU(&s.FPU),
		MSRs:   s.MSRs,
		Events: toSnapshotEvents(&s.Events),
		State:  toSnapshotState(s.State),
	}
	if s.Xsave != nil {
		v.Xsave = make([]byte, snapshot.XsaveSize)
		for i, w := range s.Xsave.Region {
			binary.LittleEndian.PutUint32(v.Xsave[4*i:], w)
		}
	}
	return v
}

// fromSnapshotVCPU converts a checkpoint's vCPU back; snapshot.Read has
// checked the XSAVE length and the run state.
func fromSnapshotVCPU(v *snapshot.VCPU) (vcpuSnapshot, error) {
	s := vcpuSnapshot{
		Regs:   kvm.Regs(v.Regs),
		Sregs:  fromSnapshotSregs(&v.Sregs),
		FPU:    fromSnapshotFPU(&v.FPU),
		MSRs:   v.MSRs,
		Events: fromSnapshotEvents(&v.Events),
	}
	var err error
	if s.State, err = fromSnapshotState(v.State); err != nil {
		return s, err
	}
	switch len(v.Xsave) {
	case 0:
	case snapshot.XsaveSize:
		s.Xsave = &kvmsys.Xsave{}
		for i := range s.Xsave.Region {
			s.Xsave.Region[i] = binary.LittleEndian.Uint32(v.Xsave[4*i:])
		}
	default:
		return s, fmt.Errorf("XSAVE area of %d bytes", len(v.Xsave))
	}
	return s, nil
}

func toSnapshotState(s vcpuState) snapshot.RunState {
	switch s {
	case stateWaitSIPI:
		return snapshot.WaitSIPI
	case stateRunning:
		return snapshot.Running
	case stateHalted:
		return snapshot.Halted
	case stateDead:
		return snapshot.Dead
	}
	panic(fmt.Sprintf("vcpu state %d", s))
}

func fromSnapshotState(s snapshot.RunState) (vcpuState, error) {
	switch s {
	case snapshot.WaitSIPI:
		return stateWaitSIPI, nil
	case snapshot.Running:
		return stateRunning, nil
	case snapshot.Halted:
		return stateHalted, nil
	case snapshot.Dead:
		return stateDead, nil
	}
	return 0, fmt.Errorf("run state %d", s)
}

func toSnapshotSegment(g kvm.Segment) snapshot.Segment {
	return snapshot.Segment{Base: g.Base, Limit: g.Limit, Selector: g.Selector, Typ: g.Typ, Present: g.Present,
		DPL: g.DPL, DB: g.DB, S: g.S, L: g.L, G: g.G, AVL: g.AVL, Unusable: g.Unusable}
}

func fromSnapshotSegment(g snapshot.Segment) kvm.Segment {
	return kvm.Segment{Base: g.Base, Limit: g.Limit, Selector: g.Selector, Typ: g.Typ, Present: g.Present,
		DPL: g.DPL, DB: g.DB, S: g.S, L: g.L, G: g.G, AVL: g.AVL, Unusable: g.Unusable}
}

func toSnapshotSregs(r *kvm.Sregs) snapshot.Sregs {
	return snapshot.Sregs{
		CS: toSnapshotSegment(r.CS), DS: toSnapshotSegment(r.DS), ES: toSnapshotSegment(r.ES),
		FS: toSnapshotSegment(r.FS), GS: toSnapshotSegment(r.GS), SS: toSnapshotSegment(r.SS),
		TR: toSnapshotSegment(r.TR), LDT: toSnapshotSegment(r.LDT),
		GDT: snapshot.Descriptor{Base: r.GDT.Base, Limit: r.GDT.Limit},
		IDT: snapshot.Descriptor{Base: r.IDT.Base, Limit: r.IDT.Limit},
		CR0: r.CR0, CR2: r.CR2, CR3: r.CR3, CR4: r.CR4, CR8: r.CR8, EFER: r.EFER, ApicBase: r.ApicBase,
		InterruptBitmap: r.InterruptBitmap,
	}
}

func fromSnapshotSregs(r *snapshot.Sregs) kvm.Sregs {
	return kvm.Sregs{
		CS: fromSnapshotSegment(r.CS), DS: fromSnapshotSegment(r.DS), ES: fromSnapshotSegment(r.ES),
		FS: fromSnapshotSegment(r.FS), GS: fromSnapshotSegment(r.GS), SS: fromSnapshotSegment(r.SS),
		TR: fromSnapshotSegment(r.TR), LDT: fromSnapshotSegment(r.LDT),
		GDT: kvm.Descriptor{Base: r.GDT.Base, Limit: r.GDT.Limit},
		IDT: kvm.Descriptor{Base: r.IDT.Base, Limit: r.IDT.Limit},
		CR0: r.CR0, CR2: r.CR2, CR3: r.CR3, CR4: r.CR4, CR8: r.CR8, EFER: r.EFER, ApicBase: r.ApicBase,
		InterruptBitmap: r.InterruptBitmap,
	}
}

func toSnapshotFPU(f *kvmsys.FPU) snapshot.FPU {
	return snapshot.FPU{FPR: f.FPR, FCW: f.FCW, FSW: f.FSW, FTWX: f.FTWX, LastOpcode: f.LastOpcode,
		LastIP: f.LastIP, LastDP: f.LastDP, XMM: f.XMM, MXCSR: f.MXCSR}
}

func fromSnapshotFPU(f *snapshot.FPU) kvmsys.FPU {
	return kvmsys.FPU{FPR: f.FPR, FCW: f.FCW, FSW: f.FSW, FTWX: f.FTWX, LastOpcode: f.LastOpcode,
		LastIP: f.LastIP, LastDP: f.LastDP, XMM: f.XMM, MXCSR: f.MXCSR}
}

func toSnapshotEvents(e *kvm.VCPUEvents) snapshot.Events {
	return snapshot.Events{
		Exception:  snapshot.Exception{Inject: e.E.Inject, Nr: e.E.Nr, HadErrorCode: e.E.HadErrorCode, Pending: e.E.Pending, ErrorCode: e.E.ErrorCode},
		Interrupt:  snapshot.Interrupt{Inject: e.I.Inject, Nr: e.I.Nr, Soft: e.I.Soft, Shadow: e.I.Shadow},
		NMI:        snapshot.NMI{Inject: e.N.Inject, Pending: e.N.Pending, Masked: e.N.Masked},
		SMI:        snapshot.SMI{SMM: e.S.SMM, Pending: e.S.Pening, SMMInsideNMI: e.S.SMMInsideNMI, LatchedInit: e.S.LatchedInit},
		SipiVector: e.SipiVector, Flags: e.Flags, TripleFault: e.TripleFault,
		ExceptionHasPayload: e.ExceptionHasPayload, ExceptionPayload: e.ExceptionPayload,
	}
}

func fromSnapshotEvents(e *snapshot.Events) kvm.VCPUEvents {
	return kvm.VCPUEvents{
		E:          kvm.Exception{Inject: e.Exception.Inject, Nr: e.Exception.Nr, HadErrorCode: e.Exception.HadErrorCode, Pending: e.Exception.Pending, ErrorCode: e.Exception.ErrorCode},
		I:          kvm.Interrupt{Inject: e.Interrupt.Inject, Nr: e.Interrupt.Nr, Soft: e.Interrupt.Soft, Shadow: e.Interrupt.Shadow},
		N:          kvm.NMI{Inject: e.NMI.Inject, Pending: e.NMI.Pending, Masked: e.NMI.Masked},
		S:          kvm.SMI{SMM: e.SMI.SMM, Pening: e.SMI.Pending, SMMInsideNMI: e.SMI.SMMInsideNMI, LatchedInit: e.SMI.LatchedInit},
		SipiVector: e.SipiVector, Flags: e.Flags, TripleFault: e.TripleFault,
		ExceptionHasPayload: e.ExceptionHasPayload, ExceptionPayload: e.ExceptionPayload,
	}
}

func toSnapshotMarks(k KernelMarks) snapshot.Marks {
	return snapshot.Marks{ReturnToUser: k.ReturnToUser, PageFault: k.PageFault}
}

func fromSnapshotMarks(k snapshot.Marks) KernelMarks {
	return KernelMarks{ReturnToUser: k.ReturnToUser, PageFault: k.PageFault}
}

func toSnapshotRanges(rs []KernelRange) []snapshot.Range {
	if rs == nil {
		return nil
	}
	out := make([]snapshot.Range, len(rs))
	for i, r := range rs {
		out[i] = snapshot.Range{Start: r.Start, End: r.End}
	}
	return out
}

func fromSnapshotRanges(rs []snapshot.Range) []KernelRange {
	if rs == nil {
		return nil
	}
	out := make([]KernelRange, len(rs))
	for i, r := range rs {
		out[i] = KernelRange{Start: r.Start, End: r.End}
	}
	return out
}
