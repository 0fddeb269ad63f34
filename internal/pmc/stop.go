package pmc

import (
	"encoding/binary"
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"io"

	"github.com/bobuhiro11/gokvm/kvm"
)

// struct kvm_guest_debug control bits (linux/kvm.h, arch/x86 uapi).
const (
	guestDbgEnable     = 0x1
	guestDbgSingleStep = 0x2
	guestDbgUseHWBP    = 0x20000
)

// kvmExitDebug is KVM_EXIT_DEBUG; exitReasonOffset is the offset of
// exit_reason in struct kvm_run.
const (
	kvmExitDebug     = 4
	exitReasonOffset = 8
)

// guestDebug is a KVM_SET_GUEST_DEBUG setting: control, and debugreg[8]
// (DR0-DR3, -, -, DR6, DR7 as KVM reads them).
type guestDebug struct {
	control  uint32
	debugreg [8]uint64
}

// setGuestDebug applies d through internal/kvm, the one copy of the ioctl.
func setGuestDebug(vcpuFD int, d *guestDebug) error {
	if err := kvmsys.SetGuestDebug(vcpuFD, d.control, &d.debugreg); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG %#x: %w", d.control, err)
	}
	return nil
}

var (
	// ErrExit is a KVM exit other than a debug exit during StopAt (MMIO,
	// I/O, HLT, shutdown...): the instruction needs the VMM. Handle the exit (the reason is in the error, see *ExitError)
	// and call StopAt again.
	ErrExit = errors.New("non-debug exit while stepping")
	// ErrUnreachable means the target cannot be reached by stepping guest
	// kernel code: it is behind the current point, its user-branch count
	// differs from the current one (only CPL0 can be stepped under PVM;
	// doc.go), or the vCPU got there at another RIP.
	ErrUnreachable = errors.New("target progress not reachable by kernel single-step")
)

// ExitError reports the exit that stopped StopAt; errors.Is(err, ErrExit).
type ExitError struct {
	// Reason is kvm_run.exit_reason.
	Reason uint32
	// At is the progress when the exit occurred.
	At Point
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("kvm exit %d at %v while stopping at a target", e.Reason, e.At)
}

// Unwrap makes errors.Is(err, ErrExit) hold.
func (e *ExitError) Unwrap() error { return ErrExit }

// hltOpcode is HLT. Single-stepping a HLT under PVM loses it: KVM reports
// the debug exit, not KVM_EXIT_HLT, and the vCPU goes on with the next
// instruction (measured, doc.go). StopAt therefore never steps one.
const hltOpcode = 0xf4

// stepThreshold is the distance, in kernel instructions, below which StopAt
// single-steps instead of running to a breakpoint: a step costs 35-50 µs
// (a KVM_RUN plus StopAt's checks, measured), while emulated code runs at
// 1.1-1.4 M instructions/s, so a breakpoint run wins from a few dozen
// instructions on.
const stepThreshold = 32

// StopAt brings the vCPU to target, a point in guest kernel code: on
// return with nil the vCPU has executed exactly target and, if rip is not
// 0, its next instruction is at rip (the RIP recorded with the target).
// target.UserBranches must equal the vCPU's current count: kernel code is
// all that can be stepped under PVM (doc.go).
//
// How: with rip known and the target more than stepThreshold instructions
// away, a hardware execute breakpoint at rip (KVM_GUESTDBG_USE_HW_BP, DR0),
// which KVM's emulator honours at CPL0; at each hit the progress is
// compared with the target and, if short, the instruction is single-stepped
// (RFLAGS.RF is not honoured here, measured) and the breakpoint re-armed.
// Otherwise single-steps (KVM_GUESTDBG_SINGLESTEP: one emulated
// instruction per KVM_RUN at CPL0, measured). mem is guest physical memory:
// before every step the next instruction is checked for HLT, which is run
// normally instead (it exits with KVM_EXIT_HLT). runPage is the vCPU's
// struct kvm_run.
//
// It returns nil at the target; an *ExitError (ErrExit) when KVM_RUN exits
// for anything else (MMIO, I/O, HLT...), which the caller handles before
// calling StopAt again; ErrInterrupted on a kick; ErrUnreachable if the
// target is behind, needs user mode, the vCPU is at CPL3, or the vCPU
// reached target.KernelInsns at another RIP (a divergence). Guest debugging
// is switched off on every return. Preconditions: called on the counter's
// thread between runs; the VMM does not use KVM_SET_GUEST_DEBUG itself.
func (c *Counter) StopAt(runPage []byte, target Point, rip uint64, mem io.ReaderAt) (err error) {
	if len(runPage) < exitReasonOffset+4 {
		return fmt.Errorf("stop at %v: kvm_run page of %d bytes", target, len(runPage))
	}
	var set guestDebug // what KVM has now; set only on change (one ioctl saved per step)
	defer func() {
		if set.control == 0 {
			return
		}
		if e := setGuestDebug(c.vcpuFD, &guestDebug{}); e != nil && err == nil {
			err = e
		}
	}()
	for {
		cur, err := c.Read()
		if err != nil {
			return err
		}
		regs, err := kvm.GetRegs(uintptr(c.vcpuFD))
		if err != nil {
			return fmt.Errorf("KVM_GET_REGS: %w", err)
		}
		if cur == target {
			if rip != 0 && regs.RIP != rip {
				return fmt.Errorf("stop at %v: reached it at rip %#x, want %#x: %w", target, regs.RIP, rip, ErrUnreachable)
			}
			return nil
		}
		if cur.UserBranches != target.UserBranches || cur.KernelInsns > target.KernelInsns {
			return fmt.Errorf("stop at %v from %v: %w", target, cur, ErrUnreachable)
		}
		// A step that returned to user mode (iretq, sysretq) leaves the
		// vCPU at CPL3, where a single-step trap would go to the guest.
		if cpl, err := currentCPL(c.vcpuFD); err != nil {
			return err
		} else if cpl != 0 {
			return fmt.Errorf("stop at %v: vcpu at CPL%d at %v: %w", target, cpl, cur, ErrUnreachable)
		}
		var dbg guestDebug
		switch hlt, err := c.nextIsHLT(regs.RIP, mem); {
		case err != nil:
			return err
		case hlt:
			// Run it for real: one instruction, then KVM_EXIT_HLT.
		case rip != 0 && regs.RIP != rip && target.KernelInsns-cur.KernelInsns > stepThreshold:
			dbg.control = guestDbgEnable | guestDbgUseHWBP
			dbg.debugreg[0] = rip
			dbg.debugreg[7] = 1 // L0: DR0 enabled, execute, 1 byte
		default:
			dbg.control = guestDbgEnable | guestDbgSingleStep
		}
		if dbg != set {
			if err := setGuestDebug(c.vcpuFD, &dbg); err != nil {
				return err
			}
			set = dbg
		}
		if err := c.Run(); err != nil {
			return err
		}
		if r := binary.LittleEndian.Uint32(runPage[exitReasonOffset:]); r != kvmExitDebug {
			at, err := c.Read()
			if err != nil {
				return err
			}
			return &ExitError{Reason: r, At: at}
		}
	}
}

// nextIsHLT reports whether the instruction at the guest linear address
// rip starts with HLT (KVM_TRANSLATE through the guest's page tables, then
// one byte of guest memory). Prefixed HLTs are not recognised; compilers
// do not emit them.
func (c *Counter) nextIsHLT(rip uint64, mem io.ReaderAt) (bool, error) {
	tr := kvm.Translation{LinearAddress: rip}
	if err := kvm.Translate(uintptr(c.vcpuFD), &tr); err != nil {
		return false, fmt.Errorf("KVM_TRANSLATE %#x: %w", rip, err)
	}
	if tr.Valid == 0 {
		return false, nil // the fetch will fault; the guest handles that
	}
	var b [1]byte
	if _, err := mem.ReadAt(b[:], int64(tr.PhysicalAddress)); err != nil {
		return false, fmt.Errorf("read guest code at %#x (gpa %#x): %w", rip, tr.PhysicalAddress, err)
	}
	return b[0] == hltOpcode, nil
}

// currentCPL returns the vCPU's privilege level: the RPL of CS, which
// equals CPL outside real mode.
func currentCPL(vcpuFD int) (int, error) {
	s, err := kvm.GetSregs(uintptr(vcpuFD))
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return int(s.CS.Selector & 3), nil
}
