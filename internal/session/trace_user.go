package session

// User code in a trace, on hardware virtualization (VMX/SVM), where a
// single step of guest user code stops after the instruction (under PVM
// it does not: shared/PLATFORM.md). Two things a plain step of user code
// gets wrong, measured in the emulated SVM host (threads2 100 on 2 vCPUs
// traced with user steps on: the final memory digest differed in three
// flags words, 0x302 where the recording had 0x202):
//
//   - SYSCALL. FMASK clears TF at the kernel entry, so the step does not
//     stop there: the whole system call runs within it, and R11, the
//     pt_regs copy the entry code makes of it, and SYSRET's return keep
//     KVM's TF. samsara executes SYSCALL itself instead (expandSyscall),
//     as the CPU would (Intel SDM vol. 2, SYSCALL; AMD APM vol. 3), and
//     the kernel's entry is then stepped like any kernel code. The
//     kernel's SYSRET is executed by samsara too (expandSysret): a step
//     of it does not stop in user mode.
//   - Exceptions (a page fault on first touch, say). Delivery clears TF,
//     so the handler runs within the step, and the frame it was entered
//     with saves RFLAGS with KVM's TF; the handler's IRET gives it back,
//     the retried instruction runs, and the step ends after it. Linux
//     keeps the frame in two places, both left behind as dead memory: the
//     entry stack at TSS.RSP0 (where the CPU pushes it, and where the exit
//     path copies it back for IRET) and pt_regs at the top of the task's
//     stack, TSS.RSP1 (arch/x86/entry/entry_64.S, sync_regs;
//     cpu_current_top_of_stack in Linux 6.1). scrubUserFrames clears TF
//     in both, and the trace marks the instruction with a fault record:
//     the handler's kernel code ran untraced.
//
// Not handled: a fault whose handler delivers a signal copies the flags,
// with TF, into the signal frame on the user stack; none of the traced
// programs here take signals.

import (
	"encoding/binary"
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/samsara-vmm/samsara/internal/trace"
	"golang.org/x/arch/x86/x86asm"
)

// MSRs SYSCALL reads (Intel SDM vol. 4, table 2-2).
const (
	msrSTAR  = 0xC0000081
	msrLSTAR = 0xC0000082
	msrFMASK = 0xC0000084
)

// expandSyscall executes the user SYSCALL in (at pre) as the CPU does in
// 64-bit mode: RCX = the next RIP, R11 = RFLAGS, RFLAGS &= ^FMASK,
// RIP = LSTAR, CS and SS the flat ring-0 segments whose selectors STAR
// bits 47:32 name (CS = sel & ^3, SS = sel + 8), CPL 0. The instruction is
// written with LSTAR as its next RIP.
func (v *vcpu) expandSyscall(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) error {
	var msr [3]uint64
	for i, idx := range []uint32{msrSTAR, msrLSTAR, msrFMASK} {
		val, err := v.MSR(idx)
		if err != nil {
			return fmt.Errorf("trace: SYSCALL: %w", err)
		}
		msr[i] = val
	}
	star, lstar, fmask := msr[0], msr[1], msr[2]
	regs := *pre
	regs.RCX = pre.RIP + uint64(in.Inst.Len)
	regs.R11 = pre.RFLAGS &^ rflagsRF
	regs.RFLAGS = pre.RFLAGS &^ fmask &^ rflagsRF
	regs.RIP = lstar
	s := *sr
	sel := uint16(star >> 32)
	// Flat 64-bit code and data segments, as KVM reports the kernel's
	// (type 0xB execute/read accessed, 0x3 read/write accessed).
	s.CS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel &^ 3, Typ: 0xB, Present: 1, S: 1, L: 1, G: 1}
	s.SS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel + 8, Typ: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	if err := v.SetRegs(&regs); err != nil {
		return fmt.Errorf("trace: SYSCALL: KVM_SET_REGS: %w", err)
	}
	if err := v.SetSregs(&s); err != nil {
		return fmt.Errorf("trace: SYSCALL: KVM_SET_SREGS: %w", err)
	}
	in.NextRIP = lstar
	e := v.s.exp
	e.index++
	if !e.writes(in) {
		return nil
	}
	return e.Set.Insn(v.id, in)
}

// expandSysret executes the kernel's SYSRET in (at pre) as the CPU does
// when returning to 64-bit user code (REX.W, Intel SDM vol. 2, SYSRET):
// RIP = RCX, RFLAGS = (R11 & 0x3C7FD7) | 2, CS and SS the flat ring-3
// segments whose selectors STAR bits 63:48 name (CS = sel + 16, SS =
// sel + 8, RPL 3), CPL 3. A single step of SYSRET does not stop in user
// mode: the trap is taken by the RFLAGS SYSRET loads, which hold no TF
// (measured in the emulated SVM host, where QEMU's TCG models it so: a
// trace of sumarr held 6 user instructions of some 10^4, the rest ran
// unstepped after each system call's return).
func (v *vcpu) expandSysret(in *trace.Insn, pre *kvm.Regs, sr *kvm.Sregs) error {
	star, err := v.MSR(msrSTAR)
	if err != nil {
		return fmt.Errorf("trace: SYSRET: %w", err)
	}
	regs := *pre
	regs.RIP = pre.RCX
	// 0x3C7FD7: the RFLAGS bits SYSRET takes from R11 (RF, VM and the
	// reserved bits cleared); bit 1 is always set.
	regs.RFLAGS = pre.R11&0x3C7FD7 | 2
	s := *sr
	sel := uint16(star >> 48)
	s.CS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: (sel + 16) | 3, Typ: 0xB, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	s.SS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: (sel + 8) | 3, Typ: 0x3, Present: 1, DPL: 3, S: 1, DB: 1, G: 1}
	if err := v.SetRegs(&regs); err != nil {
		return fmt.Errorf("trace: SYSRET: KVM_SET_REGS: %w", err)
	}
	if err := v.SetSregs(&s); err != nil {
		return fmt.Errorf("trace: SYSRET: KVM_SET_SREGS: %w", err)
	}
	in.NextRIP = regs.RIP
	e := v.s.exp
	e.index++
	if !e.writes(in) {
		return nil
	}
	return e.Set.Insn(v.id, in)
}

// isSysret64 reports whether in is a SYSRET to 64-bit code (REX.W).
func isSysret64(in *trace.Insn) bool {
	if in.Inst.Len == 0 || in.Inst.Op != x86asm.SYSRET {
		return false
	}
	for _, b := range in.Bytes {
		if b >= 0x48 && b <= 0x4F {
			return true
		}
		if b == 0x0F {
			break
		}
	}
	return false
}

// isUserSyscall reports whether in is a SYSCALL samsara executes itself.
func isUserSyscall(in *trace.Insn) bool {
	return in.Inst.Len > 0 && in.Inst.Op == x86asm.SYSCALL
}

// tssRSP0 and tssRSP1 are the offsets of RSP0 and RSP1 in the 64-bit TSS
// (Intel SDM vol. 3, figure 8-11).
const (
	tssRSP0 = 4
	tssRSP1 = 12
)

// scrubUserFrames clears KVM's TF in the interrupt frames a user step
// from pre (whose instruction is in) left at the top of the entry stack
// and of the task stack: frames whose CS is the user CS the step started
// with, whose RFLAGS are pre's plus TF (RF aside), and whose RIP is the
// instruction's (a fault) or the next one's (a trap). It returns the
// address of the frame it found (0: none): the step ran an exception's
// handler.
func (v *vcpu) scrubUserFrames(pre *kvm.Regs, sr *kvm.Sregs, in *trace.Insn) (uint64, error) {
	if pre.RFLAGS&rflagsTF != 0 {
		return 0, nil // the guest's own TF: nothing of KVM's to undo
	}
	now, err := v.Sregs()
	if err != nil {
		return 0, err
	}
	mem := v.s.m.Memory()
	tss, err := readVirtual(mem, now.CR3, now.TR.Base, tssRSP1+8)
	if err != nil {
		return 0, nil
	}
	le := binary.LittleEndian
	var found uint64
	next := pre.RIP + uint64(len(in.Bytes))
	for _, top := range []uint64{le.Uint64(tss[tssRSP0:]), le.Uint64(tss[tssRSP1:])} {
		// The frame's five words end at the stack's top: RIP, CS,
		// RFLAGS, RSP, SS (Intel SDM vol. 3, 6.14.2; RSP0 and RSP1 are
		// 16-byte aligned, so no alignment gap).
		if v.clearFrameTF(now.CR3, top-5*8, pre.RFLAGS, func(rip, cs uint64) bool {
			return cs == uint64(sr.CS.Selector) && (rip == pre.RIP || rip == next)
		}) {
			found = top - 5*8
		}
	}
	return found, nil
}
