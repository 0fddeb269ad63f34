package session

import (
	"encoding/binary"

	"github.com/bobuhiro11/gokvm/kvm"
)

// rflagsTF is RFLAGS.TF, the trap flag (Intel SDM vol. 1, 3.4.3).
const rflagsTF = 1 << 8

// rflagsRF is RFLAGS.RF, the resume flag (Intel SDM vol. 3, 18.3.1.1):
// the processor sets it in the RFLAGS image a fault saves.
const rflagsRF = 1 << 16

// fixPushedTF undoes what a single step leaks into guest memory: KVM
// single-steps by setting RFLAGS.TF, and a PUSHF stepped that way pushes
// the flags with TF set (measured under PVM: a replay that single-stepped
// every guest kernel instruction matched every chunk end but not the
// final memory digest; the one differing byte was TF in an RFLAGS value
// local_irq_save had pushed on a kernel stack). A plain run pushes the
// guest's own flags, so after a step of a PUSHF at rip the pushed TF is
// cleared unless the guest itself had set it (KVM_GET_REGS hides the TF
// of its single-stepping).
func (v *vcpu) fixPushedTF(rip uint64) error {
	insn := v.InstructionBytes(rip)
	if isSyscall(insn) {
		return v.fixSyscallTF()
	}
	if !isPushf(insn) {
		return nil
	}
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	if regs.RFLAGS&rflagsTF != 0 {
		return nil
	}
	sr, err := v.Sregs()
	if err != nil {
		return err
	}
	mem := v.s.m.Memory()
	pa, err := translate(mem, sr.CR3, regs.RSP)
	if err != nil || pa+8 > uint64(len(mem)) || pa&0xfff > 4096-8 {
		// A push that crossed a page or an unmapped stack: the step
		// would have faulted instead.
		return nil
	}
	if f := binary.LittleEndian.Uint64(mem[pa:]); f&rflagsTF != 0 {
		binary.LittleEndian.PutUint64(mem[pa:], f&^rflagsTF)
	}
	return nil
}

// fixSyscallTF undoes the TF a stepped SYSCALL saves: the instruction
// copies RFLAGS, with KVM's TF, into R11, and the kernel's SYSRET gives
// it back to user mode, where the next instruction raised a #DB the
// process received as SIGTRAP (measured in the emulated SVM host: race,
// stepped by a state-matching try at a user RIP, exited with status 133).
// A guest process that single-steps itself over a system call loses its
// own TF there; none of the guests here do.
func (v *vcpu) fixSyscallTF() error {
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	if regs.R11&rflagsTF == 0 {
		return nil
	}
	regs.R11 &^= rflagsTF
	return v.SetRegs(regs)
}

// isSyscall reports whether instruction bytes b are SYSCALL (0F 05,
// Intel SDM vol. 2), after REX prefixes.
func isSyscall(b []byte) bool {
	for len(b) > 0 && b[0] >= 0x40 && b[0] <= 0x4F {
		b = b[1:]
	}
	return len(b) >= 2 && b[0] == 0x0F && b[1] == 0x05
}

// isPushf reports whether instruction bytes b are PUSHF (9C, Intel SDM
// vol. 2), after operand-size, REX and segment prefixes.
func isPushf(b []byte) bool {
	for _, c := range b {
		switch {
		case c == 0x9C:
			return true
		case c == 0x66 || (c >= 0x40 && c <= 0x4F) || c == 0x2E || c == 0x36 || c == 0x3E || c == 0x26 || c == 0x64 || c == 0x65:
		default:
			return false
		}
	}
	return false
}

// fixStepLeaks undoes what one single step from pre leaked into guest
// memory: a PUSHF's TF (fixPushedTF), and the TF in the frame of an
// exception the stepped instruction raised (a page fault in a copy from
// user memory, say): the processor saves RFLAGS with KVM's TF there, and
// the handler's IRET gives it back to the guest, whose next instruction
// then raises a #DB of its own (as fixSyscallTF's SYSRET did). An
// exception shows as a stack that grew by a frame (five words or more)
// or moved to another stack (an IST stack); the frame is then searched
// as for an injected interrupt (fixFrameTF).
//
// It reports whether it found a dead frame (fixDeadFrameTF): the step ran
// an interrupt's or exception's whole handler.
func (v *vcpu) fixStepLeaks(pre *kvm.Regs) (bool, error) {
	if err := v.fixPushedTF(pre.RIP); err != nil {
		return false, err
	}
	regs, err := v.Regs()
	if err != nil {
		return false, err
	}
	const frame = 5 * 8
	if regs.RSP+frame <= pre.RSP || regs.RSP > pre.RSP+4096 {
		if err := v.fixFrameTF(pre.RFLAGS); err != nil {
			return false, err
		}
	}
	return v.fixDeadFrameTF(pre)
}

// fixDeadFrameTF undoes the TF in the frame of an interrupt or exception
// taken on the stack the step started on, when its whole handler ran
// within the step: on hardware virtualization, delivery clears TF, so the
// handler runs unstepped, its IRET gives TF back, and the step ends one
// instruction after the interrupted one, with the frame (RIP, CS, RFLAGS
// with KVM's TF, RSP, SS) left below the stack pointer as dead memory.
// Measured in the emulated SVM host: a trace of sumarr differed from the
// recording in one byte of final memory, the flags word of such a frame
// under native_safe_halt (0x3xx where the recording had 0x2xx). In 64-bit
// mode the CPU aligns RSP down to 16 bytes before it pushes the frame
// (Intel SDM vol. 3, 6.14.2), so the frame sits at (pre.RSP &^ 15) - 40.
// Only a frame that returns to the stepped instruction (or the next one,
// for a trap) in ring 0 with pre's flags plus TF is changed.
func (v *vcpu) fixDeadFrameTF(pre *kvm.Regs) (bool, error) {
	if pre.RFLAGS&rflagsTF != 0 {
		return false, nil
	}
	sr, err := v.Sregs()
	if err != nil {
		return false, err
	}
	return v.clearFrameTF(sr.CR3, pre.RSP&^15-5*8, pre.RFLAGS, func(rip, cs uint64) bool {
		return rip-pre.RIP <= maxInsnLen && cs&3 == 0 && cs != 0
	}), nil
}

// clearFrameTF clears KVM's TF in the interrupt frame (RIP, CS, RFLAGS,
// RSP, SS) at virtual address at, read through the page tables at cr3,
// when its RFLAGS are flags plus TF (RF aside) and match accepts its RIP
// and CS. It reports whether it cleared one.
func (v *vcpu) clearFrameTF(cr3, at, flags uint64, match func(rip, cs uint64) bool) bool {
	mem := v.s.m.Memory()
	frame, err := readVirtual(mem, cr3, at, 3*8)
	if err != nil {
		return false
	}
	le := binary.LittleEndian
	rip, cs, f := le.Uint64(frame), le.Uint64(frame[8:]), le.Uint64(frame[16:])
	if f&^rflagsRF != (flags|rflagsTF)&^rflagsRF || !match(rip, cs) {
		return false
	}
	pa, err := translate(mem, cr3, at+16)
	if err != nil || pa+8 > uint64(len(mem)) {
		return false
	}
	le.PutUint64(mem[pa:], f&^rflagsTF)
	return true
}

// frameSearch is how many stack words fixFrameTF looks at: an interrupt
// frame (RIP, CS, RFLAGS, RSP, SS; Intel SDM vol. 3, 6.14.1) plus an
// error code and the few pushes a handler's first instructions make.
const frameSearch = 8

// fixFrameTF undoes the TF that an interrupt delivered on a single-stepped
// entry saves in its frame (measured under PVM: the RFLAGS that
// asm_sysvec_apic_timer_interrupt's frame held had TF set, the replay's
// only memory difference from the recording). flags are the guest's
// RFLAGS before the entry (without KVM's TF); in the first stack word
// equal to them plus TF (RF aside) TF is cleared.
func (v *vcpu) fixFrameTF(flags uint64) error {
	if flags&rflagsTF != 0 {
		return nil
	}
	regs, sr, err := v.cpuState()
	if err != nil {
		return err
	}
	mem := v.s.m.Memory()
	for i := uint64(0); i < frameSearch; i++ {
		pa, err := translate(mem, sr.CR3, regs.RSP+8*i)
		if err != nil || pa+8 > uint64(len(mem)) {
			return nil
		}
		// A fault's frame (a page fault in a stepped copy to user
		// memory, say) also has RF set, in a plain run too: only TF
		// is KVM's. (Measured under PVM: a step of __put_user_nocheck_8
		// faulted, its frame held the flags plus TF and RF, and the
		// handler's IRET gave TF back to the guest, whose kernel then
		// ran ~100,000 instructions of #DB handling the recording never
		// ran: "preemption point passed" two chunks later.)
		if f := binary.LittleEndian.Uint64(mem[pa:]); f&^rflagsRF == (flags|rflagsTF)&^rflagsRF {
			binary.LittleEndian.PutUint64(mem[pa:], f&^rflagsTF)
			return nil
		}
	}
	return nil
}
