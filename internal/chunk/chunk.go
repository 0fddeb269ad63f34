// Package chunk decides where a chunk of the parallel recorder ends.
//
// A chunk runs one vCPU from a start point until one of:
//
//   - an exit that must be ordered (port I/O, MMIO, HLT, any other exit to
//     userspace): the recorder handles it in commit order;
//   - its budget, at a point in guest kernel code (the only code whose
//     progress can be counted exactly without a PMU; a chunk that
//     injected an interrupt at its start is never preempted: replay need
//     not deliver the interrupt at the same instruction while it
//     single-steps to the point);
//   - a privilege change: the return to user mode of a chunk that started
//     in kernel mode, or, past the budget, a kernel entry (Marks; see
//     Ender.Begin for why and for the interrupt rule);
//   - an early conflict (the chunk touched a page that a later-ordered
//     chunk has committed: it will be squashed), a stop of the recorder,
//     or another vCPU's claim to run alone: the chunk is then not
//     committed but squashed or abandoned.
//
// The package holds that decision, which is pure logic and unit-tested
// here; the recorder (internal/session, det_par.go and det_bounds.go) runs
// the vCPU, arms the breakpoints it is told to, and reports what the
// vCPU did. Page sets come from internal/ept and the order from
// internal/commit.
package chunk

import (
	"fmt"
	"time"
)

// Marks are the guest kernel addresses of privilege changes (from the
// vmlinux symbol table). Zero values turn privilege-change ends off.
type Marks struct {
	// ReturnToUser is the first instruction of the kernel's only path
	// back to user mode (Linux 6.1 x86-64 without PTI:
	// swapgs_restore_regs_and_return_to_usermode).
	ReturnToUser uint64
	// PageFault is the page-fault entry (asm_exc_page_fault), where user
	// code enters the kernel for page faults and, under PVM, syscalls.
	PageFault uint64
}

// Valid reports whether both marks are known.
func (m Marks) Valid() bool { return m.ReturnToUser != 0 && m.PageFault != 0 }

// MaxHeld is how many chunks in a row may end at a privilege change while
// their vCPU has an interrupt pending. Both ends have interrupts disabled,
// so no interrupt can be injected at the next chunk's start; after MaxHeld
// such chunks the next one does not end at the return to user mode, ends
// at an exit or a kernel preemption (mostly with interrupts enabled) and
// the interrupt is injected after it. A few: a syscall loop (a chunk per
// syscall) then delays a timer interrupt by a few syscalls only.
const MaxHeld = 4

// Start is the vCPU at a chunk's start.
type Start struct {
	// Injected: an interrupt was injected at the start.
	Injected bool
	// User: the vCPU is in guest user mode.
	User bool
	// RIP is the vCPU's instruction pointer.
	RIP uint64
	// Pending: the vCPU's local APIC has an interrupt pending.
	Pending bool
}

// Breakpoints are the addresses to arm (0: not armed).
type Breakpoints struct {
	ReturnToUser, PageFault uint64
}

// Any reports whether some breakpoint is armed.
func (b Breakpoints) Any() bool { return b.ReturnToUser != 0 || b.PageFault != 0 }

// Plan is how a chunk begins.
type Plan struct {
	// StepFirst: execute one instruction before arming (the vCPU stands
	// on a breakpoint address; RFLAGS.RF is ignored under PVM).
	StepFirst bool
	// Arm are the breakpoints to arm.
	Arm Breakpoints
}

// Ender decides where one vCPU's chunks end; one per vCPU, used by its
// goroutine only.
type Ender struct {
	marks Marks
	// held counts chunks in a row that began with an interrupt pending
	// and may end at a privilege change.
	held int
	// The current chunk.
	injected bool
	armed    Breakpoints
	budget   time.Duration
}

// NewEnder returns an Ender; marks that are not Valid turn the
// privilege-change ends off.
func NewEnder(marks Marks) *Ender {
	if !marks.Valid() {
		marks = Marks{}
	}
	return &Ender{marks: marks}
}

// Begin starts a chunk with the given budget and returns how to begin it.
// A chunk that starts in kernel mode ends at its return to user mode, so
// that the kernel work is committed before the user computation starts
// (a user-mode chunk has no budget without a PMU and may run for seconds;
// with kernel work in it, it read shared kernel pages and is nearly always
// squashed), except when it injected an interrupt (never preempted, see
// the package comment) or after MaxHeld chunks held an interrupt back.
func (e *Ender) Begin(s Start, budget time.Duration) Plan {
	e.injected, e.armed, e.budget = s.Injected, Breakpoints{}, budget
	if !e.marks.Valid() || s.Injected || s.User {
		return Plan{}
	}
	if !s.Pending {
		e.held = 0
	} else if e.held++; e.held > MaxHeld {
		e.held = 0
		return Plan{}
	}
	e.armed.ReturnToUser = e.marks.ReturnToUser
	return Plan{StepFirst: s.RIP == e.marks.ReturnToUser, Arm: e.armed}
}

// AtBreakpoint is a debug exit at rip: it ends the chunk at a privilege
// change if rip is an armed breakpoint; any other debug exit is an error.
func (e *Ender) AtBreakpoint(rip uint64) error {
	if rip != 0 && (rip == e.armed.ReturnToUser || rip == e.armed.PageFault) {
		return nil
	}
	return fmt.Errorf("debug exit at RIP %#x, not at a chunk breakpoint (armed %#x, %#x)", rip, e.armed.ReturnToUser, e.armed.PageFault)
}

// MayPreempt reports whether, elapsed into the chunk, a kick may end it
// by preemption (the caller then asks where the vCPU stands).
func (e *Ender) MayPreempt(elapsed time.Duration) bool {
	return !e.injected && elapsed >= e.budget
}

// Where is the vCPU at a kick past the budget.
type Where struct {
	// Preemptable: the vCPU stands at a point in guest kernel code that
	// replay can find again.
	Preemptable bool
	// User: the vCPU is in guest user mode.
	User bool
}

// Kicked decides a kick past the budget (MayPreempt was true): end the
// chunk (preempt), or go on, with the breakpoints to arm if they changed
// (rearm): a vCPU in user mode ends at its next kernel entry.
func (e *Ender) Kicked(w Where) (preempt bool, rearm *Breakpoints) {
	if w.Preemptable {
		return true, nil
	}
	if w.User && e.marks.Valid() && e.armed.PageFault == 0 {
		e.armed.PageFault = e.marks.PageFault
		b := e.armed
		return false, &b
	}
	return false, nil
}

// Armed returns the breakpoints armed now.
func (e *Ender) Armed() Breakpoints { return e.armed }
