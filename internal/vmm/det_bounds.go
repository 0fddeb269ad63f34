package vmm

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
//     to user mode (kernelMarks.ReturnToUser): its kernel work is
//     committed before the user computation starts;
//   - a chunk that has used its budget in user mode ends at the next
//     kernel entry through a page fault (kernelMarks.PageFault; under PVM
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
// that is pending stays pending across such an end. Up to boundsMaxHeld
// chunks in a row may end at a bound while their vCPU has an interrupt
// pending; the next one does not end at the return to user mode, so it
// ends as chunks did before (exit, or preemption in kernel code, mostly
// with interrupts enabled) and the interrupt is injected at the chunk
// after it. (Never ending at the return while an interrupt is pending was
// tried first: a chunk that released a kernel lock then ran on into
// seconds of user code with the release uncommitted, and the other vCPU
// spun on the lock all that time.)

import (
	"fmt"
	"os"

	"github.com/bobuhiro11/gokvm/kvm"
)

// privilegeEnds (SAMSARA_PAR_BOUNDARIES=0 turns it off) selects the
// privilege-change chunk ends; off, chunks end only at exits and kernel
// preemptions (for comparisons: tests/bench).
var privilegeEnds = os.Getenv("SAMSARA_PAR_BOUNDARIES") != "0"

// boundsMaxHeld is how many chunks in a row may end at a bound while an
// interrupt is pending (see above): a few, so that a syscall loop (each
// syscall a chunk) delays a timer interrupt by a few syscalls only.
const boundsMaxHeld = 4

// DR7 enable bits of DR0 and DR1 (Intel SDM vol. 3, 17.2.4, "Debug
// Control Register (DR7)": L0 is bit 0, L1 bit 2; type 00 = execution).
const dr7L1 = 1 << 2

// chunkBounds arms and recognises a chunk's privilege-change breakpoints.
type chunkBounds struct {
	v     *vcpu
	marks kernelMarks
	// ret and entry are set while the return-to-user and the page-fault
	// entry breakpoints are armed.
	ret, entry bool
}

// startBounds prepares the breakpoints of a chunk starting now. A chunk
// that injected an interrupt gets none (it is not preempted either: see
// parChunk); nor does one whose kernel has no marks.
func (v *vcpu) startBounds(injected bool) (*chunkBounds, error) {
	b := &chunkBounds{v: v, marks: v.m.marks}
	if !privilegeEnds || injected || b.marks.ReturnToUser == 0 {
		b.marks = kernelMarks{}
		return b, nil
	}
	s, err := kvm.GetSregs(uintptr(v.fd))
	if err != nil {
		return nil, err
	}
	if s.CS.Selector&3 != 0 {
		return b, nil // starts in user mode
	}
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return nil, err
	}
	v.m.mu.Lock()
	_, pending := v.m.bus.LAPIC(v.id).PendingVector()
	v.m.mu.Unlock()
	r := &v.m.par.running[v.id]
	if !pending {
		r.held = 0
	} else if r.held++; r.held > boundsMaxHeld {
		r.held = 0
		return b, nil
	}
	if regs.RIP == b.marks.ReturnToUser {
		// The previous chunk ended here. A breakpoint on the current
		// instruction would stop the vCPU before it moves (RFLAGS.RF is
		// ignored under PVM, see runTo): step over it first.
		if err := v.stepOnce(); err != nil {
			return nil, err
		}
	}
	b.ret = true
	return b, b.arm()
}

// stepOnce executes one guest instruction (KVM_GUESTDBG_SINGLESTEP).
func (v *vcpu) stepOnce() error {
	if err := setGuestDebug(v.fd, guestDbgEnable|guestDbgSingleStep, nil); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	for {
		setImmediateExit(v.run, false)
		err := runVCPU(v.fd)
		if err == errInterrupted {
			continue
		}
		if err != nil {
			return err
		}
		if v.run.ExitReason != exitDebug {
			return fmt.Errorf("single step at the return to user mode made exit %d", v.run.ExitReason)
		}
		return nil
	}
}

// userPastBudget is called when the chunk has used its budget and the
// vCPU is in user mode: from now on the chunk also ends at its next page
// fault entry.
func (b *chunkBounds) userPastBudget() error {
	if b.marks.PageFault == 0 || b.entry {
		return nil
	}
	b.entry = true
	return b.arm()
}

// arm programs the armed breakpoints (DR0: return to user, DR1: entry).
func (b *chunkBounds) arm() error {
	var dr [8]uint64
	if b.ret {
		dr[0] = b.marks.ReturnToUser
		dr[7] |= dr7L0
	}
	if b.entry {
		dr[1] = b.marks.PageFault
		dr[7] |= dr7L1
	}
	if err := setGuestDebug(b.v.fd, guestDbgEnable|guestDbgUseHWBP, &dr); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	return nil
}

// atEnd reports whether the vCPU's debug exit is one of the chunk's
// breakpoints. Any other debug exit is an error: nothing else arms them.
func (b *chunkBounds) atEnd() (bool, error) {
	regs, err := kvm.GetRegs(uintptr(b.v.fd))
	if err != nil {
		return false, err
	}
	if (b.ret && regs.RIP == b.marks.ReturnToUser) || (b.entry && regs.RIP == b.marks.PageFault) {
		return true, nil
	}
	return false, fmt.Errorf("debug exit at RIP %#x, not at a chunk breakpoint", regs.RIP)
}

// stop disarms the breakpoints.
func (b *chunkBounds) stop() error {
	if !b.ret && !b.entry {
		return nil
	}
	b.ret, b.entry = false, false
	return setGuestDebug(b.v.fd, 0, nil)
}
