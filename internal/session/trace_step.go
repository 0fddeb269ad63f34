package session

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
	"golang.org/x/arch/x86/x86asm"
)

// maxInsnLen is the longest x86 instruction (Intel SDM vol. 2, 2.3.11).
const maxInsnLen = 15

// expandStep runs the vCPU one step: one single-stepped instruction,
// written to the trace, or, in user code (which PVM cannot step) and at
// HLT (a step there changes the replay: debug_hook.go, atHalt), a plain
// run to the next exit. It reports whether the entry ended with a real
// exit. tail is runTo's stretch, which runs kernel code only.
func (v *vcpu) expandStep(c *chunkRun, tail bool) (exited bool, err error) {
	e := v.s.exp
	pre, err := v.Regs()
	if err != nil {
		return false, err
	}
	sr, err := v.Sregs()
	if err != nil {
		return false, err
	}
	// In 64-bit mode the CPL is CS's RPL (SDM vol. 3, 5.5).
	cpl := uint8(sr.CS.Selector & 3)
	if cpl != 0 || v.atHalt(pre.RIP) {
		if tail {
			return false, fmt.Errorf("trace: the way to the chunk's end point at RIP %#x runs code that cannot be single-stepped (CPL %d)", pre.RIP, cpl)
		}
		return v.expandPlain(c, pre.RIP, cpl)
	}
	e.inUser = false
	in := v.expandDecode(pre, sr, cpl)
	userRIP, toUser := v.expandToUser(in, pre, sr)
	if err := v.SetGuestDebug(vmm.GuestDebugEnable|vmm.GuestDebugSingleStep, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	err = v.Enter()
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
	if debugExit {
		// Not a chunk exit: the next entry injects nothing, as after a
		// kick (debug_hook.go, enter).
		c.inject = false
		if err := v.fixPushedTF(pre.RIP); err != nil {
			return false, err
		}
		if injected {
			if err := v.fixFrameTF(pre.RFLAGS); err != nil {
				return false, err
			}
		}
	}
	if err := v.expandWrite(in, injected); err != nil {
		return false, err
	}
	if toUser && !injected {
		// Under PVM the step does not stop in user mode (PLATFORM.md):
		// it ran user code until the next entry into the kernel (an
		// exception, interrupt or system call), and came back there.
		if err := e.Set.User(v.id, uint32(e.chunk), e.index, userRIP); err != nil {
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
// instruction at the old RIP: it is counted in Unseen, not written.
func (v *vcpu) expandWrite(in *trace.Insn, injected bool) error {
	e := v.s.exp
	if injected {
		e.Unseen++
		return nil
	}
	post, err := v.Regs()
	if err != nil {
		return err
	}
	in.NextRIP = post.RIP
	e.index++
	return e.Set.Insn(v.id, in)
}

// expandPlain runs the vCPU without a step to its next exit, saying in
// the trace that user code ran untraced (once per stretch of it) or that
// a HLT ran unstepped.
func (v *vcpu) expandPlain(c *chunkRun, rip uint64, cpl uint8) (bool, error) {
	e := v.s.exp
	switch {
	case cpl != 0 && !e.inUser:
		e.inUser = true
		if err := e.Set.User(v.id, uint32(e.chunk), e.index, rip); err != nil {
			return false, err
		}
	case cpl == 0:
		if err := e.Set.Halt(v.id, uint32(e.chunk), e.index, rip); err != nil {
			return false, err
		}
	}
	if err := v.SetGuestDebug(0, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	c.injectedNow = false
	return true, v.Enter()
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
