package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
	"golang.org/x/arch/x86/x86asm"
)

// stepSlowdown is how much slower a single-stepped guest kernel
// instruction runs than an emulated one under PVM: about 27,000 stepped
// instructions/s (README, "Execution traces") against ~1.4 M emulated
// (shared/PLATFORM.md), rounded down.
const stepSlowdown = 50

// expandCredit gives a traced chunk back all but 1/stepSlowdown of the
// time a step took, so that replayChunkLimit (det.go) bounds a traced
// chunk as it bounds the same chunk replayed plainly.
func (v *vcpu) expandCredit(c *chunkRun, d time.Duration) {
	c.started = c.started.Add(d - d/stepSlowdown)
}

// maxInsnLen is the longest x86 instruction (Intel SDM vol. 2, 2.3.11).
const maxInsnLen = 15

// expandStep runs the vCPU one step: one single-stepped instruction,
// written to the trace, or, in user code (which PVM cannot step) and at
// HLT (a step there changes the replay: debug_hook.go, atHalt), a plain
// run to the next exit. It reports whether the entry ended with a real
// exit. tail is runTo's stretch, which runs kernel code only.
func (v *vcpu) expandStep(c *chunkRun, tail bool) (exited bool, err error) {
	e := v.s.exp
	pre, sr, err := v.cpuState()
	if err != nil {
		return false, err
	}
	// In 64-bit mode the CPL is CS's RPL (SDM vol. 3, 5.5).
	cpl := uint8(sr.CS.Selector & 3)
	// User code is stepped only where a single step of it stops after the
	// instruction (hardware virtualization: Expander.UserSteps), and then
	// with SYSCALL executed by samsara and exception frames scrubbed
	// (trace_user.go); under PVM it runs plainly, untraced.
	user := cpl != 0
	if user && (!e.UserSteps || tail) || !user && v.atHalt(pre.RIP) {
		if tail {
			return false, fmt.Errorf("trace: the way to the chunk's end point at RIP %#x runs code that cannot be single-stepped (CPL %d)", pre.RIP, cpl)
		}
		return v.expandPlain(c, pre.RIP, cpl)
	}
	e.inUser = false
	in := v.expandDecode(pre, sr, cpl)
	switch {
	case c.injectedNow:
		// The entry delivers an interrupt before the instruction runs.
	case user && isUserSyscall(in):
		return false, v.expandSyscall(in, pre, sr)
	case !user && e.UserSteps && isSysret64(in):
		return false, v.expandSysret(in, pre, sr)
	}
	var userRIP uint64
	var toUser bool
	var shadowed *trace.Insn
	if !user {
		userRIP, toUser = v.expandToUser(in, pre, sr)
		shadowed = v.stepFollower(in, pre, sr)
	}
	if err := v.SetGuestDebug(vmm.GuestDebugEnable|vmm.GuestDebugSingleStep, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	t0 := time.Now()
	err = v.Enter()
	v.expandCredit(c, time.Since(t0))
	if err != nil {
		if derr := v.SetGuestDebug(0, nil); derr != nil {
			return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", derr)
		}
		if errors.Is(err, vmm.ErrInterrupted) && tail {
			// A kick: the step did not happen or is not known to.
			return false, nil
		}
		return true, err
	}
	debugExit := v.ExitReason() == vmm.ExitDebug
	injected := c.injectedNow
	c.injectedNow = false
	faulted := false
	var faultFrame uint64 // where the user fault's frame is (trace_user.go)
	var kexc *kernelFault // a kernel exception delivered by the step
	if user {
		// Also after a real exit: a handler that waits for a device
		// exits with the frame live, and its IRET must not return TF.
		if faultFrame, err = v.scrubUserFrames(pre, sr, in); err != nil {
			return false, err
		}
		faulted = faultFrame != 0
		if in.Inst.Len == 0 {
			in = v.expandRefetched(pre, sr, cpl)
		}
	}
	if debugExit {
		// Not a chunk exit: the next entry injects nothing, as after a
		// kick (debug_hook.go, enter).
		c.inject = false
		if user {
			// A user stack that grows is no exception frame: only a
			// pushed TF (PUSHF) is looked for there.
			if err := v.fixPushedTF(pre.RIP); err != nil {
				return false, err
			}
		} else {
			// A kernel step that ran a whole exception handler (on
			// hardware virtualization) is marked as a user one is.
			dead, err := v.fixStepLeaks(pre)
			if err != nil {
				return false, err
			}
			faulted = faulted || dead
			if dead {
				// Where fixDeadFrameTF found it.
				faultFrame = pre.RSP&^15 - 5*8
			} else if !injected {
				// Under PVM the step stops in the handler instead
				// (trace_events.go).
				if kexc, err = v.kernelException(pre, sr); err != nil {
					return false, err
				}
			}
		}
		if injected {
			if err := v.fixFrameTF(pre.RFLAGS); err != nil {
				return false, err
			}
			if err := v.expandFrame(pre, sr); err != nil {
				return false, err
			}
		}
	}
	if faulted && !injected && e.inWindow(e.index) {
		if err := e.Set.Fault(v.id, uint32(e.chunk), e.index, pre.RIP); err != nil {
			return false, err
		}
		if err := v.writeFrameAt(faultFrame); err != nil {
			return false, err
		}
	}
	if kexc != nil {
		// The instruction did not retire: the fault, its frame and the
		// handler's first instructions are written instead.
		if err := v.expandKernelFault(kexc, pre, sr); err != nil {
			return false, err
		}
	} else if err := v.expandWrite(in, shadowed, pre, sr, injected); err != nil {
		return false, err
	}
	if faulted {
		// The handler may have switched tasks and come back.
		if err := v.expandTask(false); err != nil {
			return false, err
		}
	}
	if toUser && !injected && !e.UserSteps && e.inWindow(e.index) {
		// Under PVM the step does not stop in user mode (PLATFORM.md):
		// it ran user code until the next entry into the kernel (an
		// exception, interrupt or system call), and came back there.
		if err := e.Set.User(v.id, uint32(e.chunk), e.index, userRIP); err != nil {
			return false, err
		}
	}
	if toUser && !injected {
		// The user code (and under PVM the kernel entry it ran into) may
		// have switched tasks.
		if err := v.expandTask(false); err != nil {
			return false, err
		}
	}
	if debugExit {
		return false, nil
	}
	// A step left armed would stop the KVM_RUN that completes this exit's
	// I/O (debug_hook.go, enter).
	if err := v.SetGuestDebug(0, nil); err != nil {
		return true, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	return true, nil
}

// expandWrite writes a stepped instruction. A step whose entry delivered
// an injected interrupt went to the handler instead of executing the
// instruction at the old RIP (expandDelivered). shadowed, when not nil,
// is the instruction after a stepped STI (stiShadowed) or the one a kernel
// IRETQ returns to (iretFollower), written too when
// the step ran it.
func (v *vcpu) expandWrite(in, shadowed *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs, injected bool) error {
	e := v.s.exp
	post, err := v.Regs()
	if err != nil {
		return err
	}
	if injected {
		return v.expandDelivered(sr, post.RIP)
	}
	in.NextRIP = post.RIP
	if shadowed != nil && post.RIP != shadowed.RIP {
		// The step ran the instruction in STI's shadow too.
		in.NextRIP = shadowed.RIP
		if err := v.expandOne(in); err != nil {
			return err
		}
		shadowed.Index = e.index
		shadowed.NextRIP = post.RIP
		in = shadowed
	}
	if isRepString(in.Bytes) && pre.RCX > post.RCX {
		v.expandRep(in, pre.RCX-post.RCX, pre.RFLAGS, sr.CR3)
	}
	return v.expandOne(in)
}

// expandOne writes one executed instruction (its stores' values read
// now, after it ran) and follows a task switch it made.
func (v *vcpu) expandOne(in *trace.Insn) error {
	e := v.s.exp
	if e.Values {
		// Stores: the value the instruction left.
		v.expandValues(in, trace.AccessWrite)
	}
	e.index++
	if e.writes(in) {
		if err := e.Set.Insn(v.id, in); err != nil {
			return err
		}
	}
	if e.switchesTask(in) {
		return v.expandTask(false)
	}
	return nil
}

// stiShadowed decodes, before a step of STI (in), the instruction after
// it: measured in the emulated SVM host, such a step does not stop after
// STI but after the next instruction too (STI's one-instruction shadow
// holds the single-step trap back as it holds interrupts; a trace of
// threads2 missed the CALL after STI in expire_timers, and the memory
// consistency check then found a return address no traced store had
// written). STI changes only IF, so the registers before the step are
// those the next instruction starts with. The fences too: measured under
// PVM, a step of LFENCE (in copy_to_user's access check) also ran the
// CALL after it, and the consistency check found the return address it
// pushed read by a RET with no traced store of it; a fence changes no
// register either. And SWAPGS: measured under PVM (TestGDB under a
// watchpoint), a step of it on the way back to user mode ran the JMP
// after it too; it changes only the GS base, which no decoding reads.
func (v *vcpu) stiShadowed(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) *trace.Insn {
	if in.Inst.Len == 0 {
		return nil
	}
	switch in.Inst.Op {
	case x86asm.STI, x86asm.LFENCE, x86asm.MFENCE, x86asm.SFENCE, x86asm.SWAPGS:
	default:
		return nil
	}
	next := *pre
	next.RIP = pre.RIP + uint64(in.Inst.Len)
	return v.expandDecode(&next, sr, 0)
}

// stepFollower is the instruction a single step of in may run too, decoded
// before the step (stiShadowed, iretFollower), or nil.
func (v *vcpu) stepFollower(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) *trace.Insn {
	if next := v.stiShadowed(in, pre, sr); next != nil {
		return next
	}
	return v.iretFollower(in, pre, sr)
}

// iretFollower decodes, before a step of a kernel IRETQ (in) that returns
// to kernel code, the instruction it returns to. Measured under PVM: such
// a step (of the IRET ending an interrupt the trace delivered, whose
// frame's RFLAGS the tracer had cleared of TF) ran the next instruction
// too, a CALL whose pushed return address the consistency check found
// read by a later RET with no traced store of it. The instruction starts
// with the frame's RIP, RFLAGS and RSP (Intel SDM vol. 2, IRET) and the
// other registers as they are. A return to user code is not looked at:
// user code is traced only on hardware virtualization, where the step
// stops there.
func (v *vcpu) iretFollower(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) *trace.Insn {
	if in.Inst.Len == 0 || in.Inst.Op != x86asm.IRETQ {
		return nil
	}
	frame, err := readVirtual(v.s.m.Memory(), sr.CR3, pre.RSP, 5*8)
	if err != nil {
		return nil
	}
	le := binary.LittleEndian
	if cs := le.Uint64(frame[8:]); cs&3 != 0 {
		return nil
	}
	next := *pre
	next.RIP, next.RFLAGS, next.RSP = le.Uint64(frame), le.Uint64(frame[16:]), le.Uint64(frame[24:])
	return v.expandDecode(&next, sr, 0)
}

// expandPlain runs the vCPU without a step to its next exit, saying in
// the trace that user code ran untraced (once per stretch of it) or that
// a HLT ran unstepped.
func (v *vcpu) expandPlain(c *chunkRun, rip uint64, cpl uint8) (bool, error) {
	e := v.s.exp
	switch {
	case cpl != 0 && !e.inUser:
		e.inUser = true
		if !e.inWindow(e.index) {
			break
		}
		if err := e.Set.User(v.id, uint32(e.chunk), e.index, rip); err != nil {
			return false, err
		}
	case cpl == 0 && e.inWindow(e.index):
		if err := e.Set.Halt(v.id, uint32(e.chunk), e.index, rip); err != nil {
			return false, err
		}
	}
	if err := v.SetGuestDebug(0, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	c.injectedNow = false
	if err := v.Enter(); err != nil {
		return true, err
	}
	// What ran unstepped may have switched tasks.
	return true, v.expandTask(false)
}

// expandDecode reads and decodes the instruction at pre.RIP, with its
// memory accesses from the registers before it runs, translated to
// guest-physical addresses by a walk of the guest page tables
// (debug_walk.go). An undecodable instruction keeps its bytes and has no
// accesses.
func (v *vcpu) expandDecode(pre *kvm.Regs, sr *kvm.Sregs, cpl uint8) *trace.Insn {
	e := v.s.exp
	mem := v.s.m.Memory()
	code, err := readVirtual(mem, sr.CR3, pre.RIP, maxInsnLen)
	if err != nil {
		// The 15 bytes run into an unmapped page: up to the page's end.
		code, _ = readVirtual(mem, sr.CR3, pre.RIP, int(4096-pre.RIP&0xfff))
	}
	r := trace.Regs{GPR: [16]uint64{pre.RAX, pre.RCX, pre.RDX, pre.RBX, pre.RSP, pre.RBP, pre.RSI, pre.RDI,
		pre.R8, pre.R9, pre.R10, pre.R11, pre.R12, pre.R13, pre.R14, pre.R15},
		RIP: pre.RIP, FSBase: sr.FS.Base, GSBase: sr.GS.Base}
	in := &trace.Insn{Chunk: uint32(e.chunk), Index: e.index, RIP: pre.RIP, CPL: cpl, Bytes: code}
	inst, acc, err := trace.Decode(code, &r, func(va uint64) (uint64, bool) {
		pa, err := translate(mem, sr.CR3, va)
		return pa, err == nil
	})
	if err == nil {
		in.Inst, in.Mem, in.Bytes = inst, acc, code[:inst.Len]
	}
	if e.Values {
		// Loads: the value before the instruction runs.
		v.expandValues(in, trace.AccessRead)
	}
	return in
}

// expandRefetched decodes, after its step, a user instruction whose code
// could not be read before it: its page was not mapped, the fetch
// faulted, and the handler (which on hardware virtualization runs within
// the step, scrubUserFrames) mapped it before the instruction ran.
// Measured in the emulated SVM host: threads2's first instructions after
// exec were written with no bytes. Its loads' values, read now, after it
// ran, are dropped (a store or read-modify-write keeps its value, which
// is read after the instruction anyway).
func (v *vcpu) expandRefetched(pre *kvm.Regs, sr *kvm.Sregs, cpl uint8) *trace.Insn {
	in := v.expandDecode(pre, sr, cpl)
	for i := range in.Mem {
		if a := &in.Mem[i]; a.Flags&(trace.AccessRead|trace.AccessWrite) == trace.AccessRead {
			a.Flags &^= trace.AccessValue
			a.Value = 0
		}
	}
	return in
}

// expandToUser reports whether in returns to user mode, and where: SYSRET
// (to RCX) or an IRETQ whose frame's CS has RPL 3 (frame RIP, CS, RFLAGS,
// RSP, SS: Intel SDM vol. 3, 6.14.1).
func (v *vcpu) expandToUser(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) (uint64, bool) {
	switch in.Inst.Op {
	case x86asm.SYSRET:
		return pre.RCX, true
	case x86asm.IRETQ:
		frame, err := readVirtual(v.s.m.Memory(), sr.CR3, pre.RSP, 16)
		if err != nil {
			return 0, false
		}
		return binary.LittleEndian.Uint64(frame), binary.LittleEndian.Uint64(frame[8:])&3 == 3
	}
	return 0, false
}

// expandValues fills the value of in's accesses that have flag (write
// wins over read for a read-modify-write) from guest RAM, when the access
// lies in RAM and within one page.
func (v *vcpu) expandValues(in *trace.Insn, flag uint8) {
	mem := v.s.m.Memory()
	for i := range in.Mem {
		a := &in.Mem[i]
		kind := a.Flags & (trace.AccessRead | trace.AccessWrite)
		if a.Flags&trace.AccessUnmapped != 0 || kind&flag == 0 || (flag == trace.AccessRead && kind != trace.AccessRead) {
			continue
		}
		n := uint64(min(a.Size, 8))
		if a.PA+n > uint64(len(mem)) || a.PA&0xfff+n > 4096 {
			continue
		}
		var b [8]byte
		copy(b[:], mem[a.PA:a.PA+n])
		a.Value = binary.LittleEndian.Uint64(b[:])
		a.Flags |= trace.AccessValue
	}
}

// rflagsDF is RFLAGS.DF, the direction flag (Intel SDM vol. 1, 3.4.3.2):
// string instructions step downwards when set.
const rflagsDF = 1 << 10

// expandRep widens the accesses of a REP string instruction to the n
// iterations the step ran (the emulator batches them), from the lowest
// address. A load's value, read before the step for one element, no
// longer covers the access and is dropped (a store's is read after).
func (v *vcpu) expandRep(in *trace.Insn, n, rflags, cr3 uint64) {
	elem := uint64(trace.StringElement[in.Inst.Op])
	if elem == 0 || n < 2 {
		return
	}
	for i := range in.Mem {
		a := &in.Mem[i]
		a.Size = uint16(min(n*elem, 0xffff))
		a.Flags &^= trace.AccessValue
		a.Value = 0
		if rflags&rflagsDF == 0 {
			continue
		}
		a.VA -= (n - 1) * elem
		if pa, err := translate(v.s.m.Memory(), cr3, a.VA); err == nil {
			a.PA = pa
		} else {
			a.Flags |= trace.AccessUnmapped
		}
	}
}

// maxDeliveredRun bounds the handler instructions a delivering step is
// looked for in: measured here, the step executes the handler's first
// instruction, the 3-byte NOP its CLAC (ASM_CLAC in
// arch/x86/entry/entry_64.S) is patched to with SMAP off
// (shared/PLATFORM.md), and stops after it.
const maxDeliveredRun = 16

// expandDelivered writes what a step that delivered injected vector e.vec
// executed: the instructions from the handler's entry (read from the IDT
// at the step's start) to rip, where the step stopped, provided they touch
// no memory (they are then exactly known); otherwise the step counts in
// Unseen and nothing is written.
func (v *vcpu) expandDelivered(sr *kvm.Sregs, rip uint64) error {
	e := v.s.exp
	mem := v.s.m.Memory()
	at, err := interruptHandler(mem, sr, e.vec)
	if err != nil {
		e.Unseen++
		return nil
	}
	var run []*trace.Insn
	for at != rip {
		if at > rip || rip-at > maxDeliveredRun {
			e.Unseen++
			return nil
		}
		code, err := readVirtual(mem, sr.CR3, at, int(rip-at))
		if err != nil {
			e.Unseen++
			return nil
		}
		inst, acc, err := trace.Decode(code, &trace.Regs{RIP: at}, func(uint64) (uint64, bool) { return 0, false })
		if err != nil || len(acc) != 0 || trace.IsBranch(inst) {
			e.Unseen++
			return nil
		}
		run = append(run, &trace.Insn{Chunk: uint32(e.chunk), RIP: at, Bytes: code[:inst.Len], Inst: inst, NextRIP: at + uint64(inst.Len)})
		at += uint64(inst.Len)
	}
	for _, in := range run {
		in.Index = e.index
		e.index++
		if !e.writes(in) {
			continue
		}
		if err := e.Set.Insn(v.id, in); err != nil {
			return err
		}
	}
	return nil
}
