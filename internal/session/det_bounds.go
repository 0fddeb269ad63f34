package session

// Privilege-change chunk ends (parallel recorder).
//
// Without a PMU a chunk running guest user code cannot be stopped at an
// exact instruction (README, "Platform notes"), so a thread computing in
// user mode stays in one chunk until it enters the kernel and the chunk
// ends there. Such a chunk lasts as long as the computation, and if it
// also ran kernel code (the tail of the interrupt or syscall it returned
// from, the entry it ends with) it read and wrote shared kernel pages
// (timekeeping, scheduler, task lists) that the other vCPUs write all the
// time: measured with a two-thread spin loop, nearly every long chunk was
// squashed and run again (46% of the work re-executed).
//
// So a chunk ends where the guest changes privilege, at two kernel
// instructions found with hardware breakpoints (exact under PVM in guest
// kernel code, as replay's preemption points are):
//
//   - a chunk that starts in kernel mode ends at the start of the return
//     to user mode (chunk.Marks.ReturnToUser): its kernel work is
//     committed before the user computation starts;
//   - a chunk that has used its budget in user mode ends at the next
//     kernel entry through a page fault (chunk.Marks.PageFault; under PVM
//     syscalls arrive there too): the user computation is committed
//     before the kernel work starts.
//
// A user-mode chunk then touches user pages, its kernel stack and its
// CPU's TSS only, and is squashed only for real sharing with the other
// threads. Replay needs nothing new: the end is a point in guest kernel
// code (instructions counted since the chunk start, RIP, registers), found
// by runTo like any preemption point.
//
// Measured here, not assumed (PLATFORM.md does not cover it): under PVM
// neither a hardware breakpoint on a user address nor a single step over
// the kernel's IRETQ stops the vCPU in user mode (the next debug exit is
// at the next kernel entry), so the first user instruction cannot be a
// chunk end; the return path's first instruction can.
//
// Interrupts: both ends are points with interrupts disabled, where no
// interrupt can be injected at the next chunk's start, so an interrupt
// that is pending stays pending across such an end. Up to chunk.MaxHeld
// chunks in a row may end at a bound while their vCPU has an interrupt
// pending; the next one does not end at the return to user mode, so it
// ends as chunks did before (exit, or preemption in kernel code, mostly
// with interrupts enabled) and the interrupt is injected at the chunk
// after it. (Never ending at the return while an interrupt is pending was
// tried first: a chunk that released a kernel lock then ran on into
// seconds of user code with the release uncommitted, and the other vCPU
// spun on the lock all that time.)

import (
	"errors"
	"fmt"
	"time"

	"github.com/samsara-vmm/samsara/internal/chunk"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// DR7's L1 enable bit, for DR1 (Intel SDM vol. 3, 17.2.4, "Debug Control
// Register (DR7)": L0 is bit 0, L1 bit 2; type 00 = execution).
const dr7L1 = 1 << 2

// newEnder is a vCPU's chunk.Ender. Without Options.PrivilegeEnds
// (record --privilege-ends=false, for comparisons in tests/bench) chunks
// end only at exits and kernel preemptions.
func (s *Session) newEnder() *chunk.Ender {
	if !s.opts.PrivilegeEnds {
		return chunk.NewEnder(chunk.Marks{})
	}
	return chunk.NewEnder(chunk.Marks(s.m.Marks()))
}

// beginBounds starts the chunk's end decision (chunk.Ender.Begin) and
// arms the breakpoints it asks for.
func (v *vcpu) beginBounds(injected bool, budget time.Duration) error {
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	_, pending := v.PendingVector()
	e := v.s.par.enders[v.id]
	plan := e.Begin(chunk.Start{Injected: injected, User: s.CS.Selector&3 != 0, RIP: regs.RIP, Pending: pending}, budget)
	if plan.StepFirst {
		if err := v.stepOnce(); err != nil {
			return err
		}
	}
	return v.armBounds(plan.Arm)
}

// armBounds programs the breakpoints (DR0: return to user, DR1: entry);
// none armed turns guest debugging off.
func (v *vcpu) armBounds(b chunk.Breakpoints) error {
	if !b.Any() {
		return nil
	}
	var dr [8]uint64
	if b.ReturnToUser != 0 {
		dr[0] = b.ReturnToUser
		dr[7] |= dr7L0
	}
	if b.PageFault != 0 {
		dr[1] = b.PageFault
		dr[7] |= dr7L1
	}
	if err := v.SetGuestDebug(vmm.GuestDebugEnable|vmm.GuestDebugUseHWBP, &dr); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	return nil
}

// atBound checks a debug exit against the chunk's breakpoints: nil means
// the chunk ends at a privilege change.
func (v *vcpu) atBound() error {
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	return v.s.par.enders[v.id].AtBreakpoint(regs.RIP)
}

// endBounds disarms the chunk's breakpoints.
func (v *vcpu) endBounds() error {
	if !v.s.par.enders[v.id].Armed().Any() {
		return nil
	}
	return v.SetGuestDebug(0, nil)
}

// stepOnce executes one guest instruction (KVM_GUESTDBG_SINGLESTEP).
func (v *vcpu) stepOnce() error {
	if err := v.SetGuestDebug(vmm.GuestDebugEnable|vmm.GuestDebugSingleStep, nil); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	for {
		err := v.Enter()
		if errors.Is(err, vmm.ErrInterrupted) {
			continue
		}
		if err != nil {
			return err
		}
		if v.ExitReason() != vmm.ExitDebug {
			return fmt.Errorf("single step at the return to user mode made exit %d", v.ExitReason())
		}
		return v.SetGuestDebug(0, nil)
	}
}
