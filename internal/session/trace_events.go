package session

// The events of a trace that are not instructions (issue 16): device
// accesses that exited to the VMM, with the value a read was answered
// with; the device's writes into guest memory (DMA) while such an exit was
// handled; the frame an interrupt's or exception's delivery pushed; and,
// under PVM, a kernel exception a step delivered, which the step stopped
// in the handler of (the instruction did not retire). Each is written
// at the position it happened, so a consumer that replays the trace's
// memory (trace.CheckConsistency) sees every write the guest's own
// instructions did not make.

import (
	"encoding/binary"

	"github.com/bobuhiro11/gokvm/kvm"

	"github.com/samsara-vmm/samsara/internal/trace"
)

// pendingDMA is a device write collected while an exit is handled.
type pendingDMA struct {
	pa   uint64
	data []byte
}

// observeDMA starts collecting the device's writes into guest memory for
// expandExit.
func (s *Session) observeDMA(e *Expander) {
	s.m.ObserveDMA(func(pa uint64, data []byte) {
		if e.on {
			e.dma = append(e.dma, pendingDMA{pa, append([]byte(nil), data...)})
		}
	})
}

// expandExit is runChunk's hook after a replayed exit was handled: the
// device access it made (with a read's answer, known only now) and the
// DMA its handling did, at the position after the instruction that
// exited.
func (v *vcpu) expandExit() error {
	e := v.s.exp
	if e == nil {
		return nil
	}
	dma := e.dma
	e.dma = nil
	if !e.on || !e.inWindow(e.index) {
		return nil
	}
	if d, ok := v.DeviceAccess(); ok {
		ev := trace.Device{MMIO: d.MMIO, Write: d.Write, Addr: d.Addr, Size: uint8(d.Size), Count: uint16(d.Count), Data: d.Data}
		if err := e.Set.Device(v.id, uint32(e.chunk), e.index, ev); err != nil {
			return err
		}
	}
	for _, w := range dma {
		if err := e.Set.DMA(v.id, uint32(e.chunk), e.index, trace.DMA{PA: w.pa, Data: w.data}); err != nil {
			return err
		}
	}
	return nil
}

// expandFrame writes the frame that a stepped entry's delivery of an
// injected interrupt pushed, looked for where each platform leaves it, as
// the saved RIP (pre's: an interrupt arrives before the instruction)
// followed, two words on, by the saved RFLAGS (TF and RF aside):
//   - among the first frameSearch words at the handler's stack pointer,
//     as fixFrameTF does (PVM: the step stops in the handler, whose first
//     instructions may have pushed more);
//   - where the CPU pushed it, now dead memory (hardware virtualization:
//     the handler ran within the step and returned): below the
//     interrupted kernel stack, at RSP rounded down to 16 minus the five
//     words (fixDeadFrameTF), or at the top of the entry stack (TSS RSP0)
//     for user code (scrubUserFrames).
//
// Interrupts push no error code (Intel SDM vol. 3, 6.13). A frame not
// found is not written (counted in Expander.FramesUnseen).
func (v *vcpu) expandFrame(pre *kvm.Regs, preSr *kvm.Sregs) error {
	e := v.s.exp
	if !e.inWindow(e.index) {
		return nil
	}
	regs, sr, err := v.cpuState()
	if err != nil {
		return err
	}
	mem := v.s.m.Memory()
	const ignored = rflagsTF | rflagsRF
	matches := func(va uint64) bool {
		f, err := readVirtual(mem, sr.CR3, va, 3*8)
		le := binary.LittleEndian
		return err == nil && le.Uint64(f) == pre.RIP && le.Uint64(f[16:])&^ignored == pre.RFLAGS&^ignored
	}
	for i := uint64(0); i < frameSearch; i++ {
		if va := regs.RSP + 8*i; matches(va) {
			return v.writeFrame(sr.CR3, va, false)
		}
	}
	dead := pre.RSP&^15 - 5*8
	if preSr.CS.Selector&3 != 0 {
		tss, err := readVirtual(mem, sr.CR3, sr.TR.Base, tssRSP0+8)
		if err != nil {
			e.FramesUnseen++
			return nil
		}
		dead = binary.LittleEndian.Uint64(tss[tssRSP0:]) - 5*8
	}
	if matches(dead) {
		return v.writeFrame(sr.CR3, dead, false)
	}
	e.FramesUnseen++
	return nil
}

// writeFrameAt writes the frame of a user fault that a step's handler
// ran for, found at va by scrubUserFrames (its vector, and so whether an
// error code lies below it, is not known: five words are written).
func (v *vcpu) writeFrameAt(va uint64) error {
	if va == 0 {
		return nil
	}
	sr, err := v.Sregs()
	if err != nil {
		return err
	}
	return v.writeFrame(sr.CR3, va, false)
}

// writeFrame writes the five-word frame (RIP at virtual address va,
// through cr3) at the current position, with the error code below it
// when hasError; one that cannot be read is counted in FramesUnseen.
func (v *vcpu) writeFrame(cr3, va uint64, hasError bool) error {
	e := v.s.exp
	if hasError {
		va -= 8
	}
	n := 5
	if hasError {
		n = 6
	}
	mem := v.s.m.Memory()
	words, err := readVirtual(mem, cr3, va, 8*n)
	pa, perr := translate(mem, cr3, va)
	if err != nil || perr != nil {
		e.FramesUnseen++
		return nil
	}
	w := func(i int) uint64 { return binary.LittleEndian.Uint64(words[8*i:]) }
	f := trace.Frame{VA: va, PA: pa}
	if hasError {
		f.HasError, f.Error, words = true, w(0), words[8:]
	}
	f.RIP, f.CS, f.RFLAGS, f.RSP, f.SS = w(0), w(1), w(2), w(3), w(4)
	return e.Set.Frame(v.id, uint32(e.chunk), e.index, f)
}

// kernelFault is an exception that a stepped kernel instruction raised
// and whose delivery the step made, stopping in the handler (PVM: there
// a step does not run the handler, as hardware virtualization's does).
type kernelFault struct {
	vec     uint8
	frameVA uint64
	// hasError: the vector pushes an error code (below the frame).
	hasError bool
}

// vectorsWithError are the exceptions whose delivery pushes an error code
// (Intel SDM vol. 3, table 6-1: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
// #VC, #SX).
var vectorsWithError = map[uint8]bool{8: true, 10: true, 11: true, 12: true, 13: true, 14: true, 17: true, 21: true, 29: true, 30: true}

// kernelException reports the exception a kernel step from pre delivered,
// or nil: the stack dropped by at least a frame, a frame on it returns to
// the stepped instruction (saved RIP, CS, RFLAGS and RSP are pre's: a
// fault, retried after the handler) and the step stopped within the
// first instructions of an exception vector's handler. Measured under PVM:
// a `rep movsb` of copy_to_user into a user page not yet mapped was
// written as if it retired, while the CPU pushed a #PF frame that the
// consistency check then found as loads no traced store had written.
func (v *vcpu) kernelException(pre *kvm.Regs, sr *kvm.Sregs) (*kernelFault, error) {
	regs, err := v.Regs()
	if err != nil {
		return nil, err
	}
	if regs.RSP+5*8 > pre.RSP || regs.RSP+4096 < pre.RSP {
		return nil, nil
	}
	mem := v.s.m.Memory()
	words, err := readVirtual(mem, sr.CR3, regs.RSP, 8*(frameSearch+4))
	if err != nil {
		return nil, nil
	}
	w := func(i int) uint64 { return binary.LittleEndian.Uint64(words[8*i:]) }
	const ignored = rflagsTF | rflagsRF
	at := -1
	for i := 0; i < frameSearch; i++ {
		if w(i) == pre.RIP && w(i+1) == uint64(sr.CS.Selector) && w(i+2)&^ignored == pre.RFLAGS&^ignored && w(i+3) == pre.RSP {
			at = i
			break
		}
	}
	if at < 0 {
		return nil, nil
	}
	for vec := uint8(0); vec < 32; vec++ {
		h, err := interruptHandler(mem, sr, vec)
		if err != nil {
			return nil, nil
		}
		if regs.RIP >= h && regs.RIP-h <= maxDeliveredRun {
			return &kernelFault{vec: vec, frameVA: regs.RSP + 8*uint64(at), hasError: vectorsWithError[vec] && at > 0}, nil
		}
	}
	return nil, nil
}

// expandKernelFault writes a kernel exception a step delivered: a fault
// record at the instruction's position (it did not retire and runs again
// after the handler), the frame with its error code, and the handler's
// first instructions that ran within the step.
func (v *vcpu) expandKernelFault(k *kernelFault, pre *kvm.Regs, sr *kvm.Sregs) error {
	e := v.s.exp
	if e.inWindow(e.index) {
		if err := e.Set.Fault(v.id, uint32(e.chunk), e.index, pre.RIP); err != nil {
			return err
		}
		if err := v.writeFrame(sr.CR3, k.frameVA, k.hasError); err != nil {
			return err
		}
	}
	post, err := v.Regs()
	if err != nil {
		return err
	}
	e.vec = k.vec
	return v.expandDelivered(sr, post.RIP)
}
