package chunk

import (
	"testing"
	"time"
)

var marks = Marks{ReturnToUser: 0xffffffff81400dd0, PageFault: 0xffffffff81400b00}

const budget = 10 * time.Millisecond

// TestKernelStartEndsAtReturn: a chunk starting in kernel mode arms the
// return-to-user breakpoint, and stopping there ends it; one starting on
// that very instruction steps over it first.
func TestKernelStartEndsAtReturn(t *testing.T) {
	e := NewEnder(marks)
	p := e.Begin(Start{RIP: 0xffffffff81000000}, budget)
	if p.StepFirst || p.Arm != (Breakpoints{ReturnToUser: marks.ReturnToUser}) {
		t.Fatalf("kernel start: plan %+v, want the return breakpoint only", p)
	}
	if err := e.AtBreakpoint(marks.ReturnToUser); err != nil {
		t.Errorf("stop at the return: %v", err)
	}
	if err := e.AtBreakpoint(marks.PageFault); err == nil {
		t.Errorf("stop at the unarmed entry accepted")
	}
	p = e.Begin(Start{RIP: marks.ReturnToUser}, budget)
	if !p.StepFirst || p.Arm.ReturnToUser == 0 {
		t.Errorf("start on the return instruction: plan %+v, want a step then the breakpoint", p)
	}
}

// TestUserStart: a chunk starting in user mode arms nothing; past its
// budget a kick in user mode arms the entry breakpoint once; a kick at a
// preemptable kernel point ends it.
func TestUserStart(t *testing.T) {
	e := NewEnder(marks)
	if p := e.Begin(Start{User: true, RIP: 0x401000}, budget); p.Arm.Any() || p.StepFirst {
		t.Fatalf("user start: plan %+v, want nothing", p)
	}
	if e.MayPreempt(budget / 2) {
		t.Errorf("preemptable before the budget")
	}
	if !e.MayPreempt(budget) {
		t.Fatalf("not preemptable at the budget")
	}
	preempt, rearm := e.Kicked(Where{User: true})
	if preempt || rearm == nil || rearm.PageFault != marks.PageFault {
		t.Fatalf("user-mode kick past the budget: preempt %v rearm %+v, want the entry breakpoint", preempt, rearm)
	}
	if _, again := e.Kicked(Where{User: true}); again != nil {
		t.Errorf("second user-mode kick re-armed %+v", again)
	}
	if err := e.AtBreakpoint(marks.PageFault); err != nil {
		t.Errorf("stop at the armed entry: %v", err)
	}
	if preempt, _ := e.Kicked(Where{Preemptable: true}); !preempt {
		t.Errorf("kick at a preemptable kernel point did not end the chunk")
	}
	if preempt, rearm := e.Kicked(Where{}); preempt || rearm != nil {
		t.Errorf("kick at a kernel point that is not preemptable: preempt %v rearm %+v", preempt, rearm)
	}
}

// TestInjectedNeverEnds: a chunk that injected an interrupt arms nothing
// and is never preempted.
func TestInjectedNeverEnds(t *testing.T) {
	e := NewEnder(marks)
	if p := e.Begin(Start{Injected: true}, budget); p.Arm.Any() {
		t.Errorf("injected chunk armed %+v", p.Arm)
	}
	if e.MayPreempt(time.Hour) {
		t.Errorf("injected chunk preemptable")
	}
}

// TestHeldInterrupt: while an interrupt stays pending, at most MaxHeld
// chunks in a row end at the return to user mode; the next does not (so
// the interrupt can be injected after it), and counting starts over.
func TestHeldInterrupt(t *testing.T) {
	e := NewEnder(marks)
	for round := 0; round < 2; round++ {
		for i := 1; i <= MaxHeld; i++ {
			if p := e.Begin(Start{Pending: true, RIP: 0xffffffff81000000}, budget); p.Arm.ReturnToUser == 0 {
				t.Fatalf("round %d: chunk %d with an interrupt pending did not arm the return", round, i)
			}
		}
		if p := e.Begin(Start{Pending: true, RIP: 0xffffffff81000000}, budget); p.Arm.Any() {
			t.Fatalf("round %d: chunk %d with an interrupt pending armed %+v", round, MaxHeld+1, p.Arm)
		}
	}
	e.Begin(Start{Pending: true}, budget)
	e.Begin(Start{}, budget) // nothing pending: the count starts over
	for i := 1; i <= MaxHeld; i++ {
		if p := e.Begin(Start{Pending: true}, budget); !p.Arm.Any() {
			t.Fatalf("after a chunk without a pending interrupt, chunk %d did not arm", i)
		}
	}
}

// TestNoMarks: without kernel marks nothing is ever armed and chunks end
// by exits and preemptions only.
func TestNoMarks(t *testing.T) {
	for _, m := range []Marks{{}, {ReturnToUser: marks.ReturnToUser}} {
		e := NewEnder(m)
		if p := e.Begin(Start{RIP: marks.ReturnToUser}, budget); p.Arm.Any() || p.StepFirst {
			t.Errorf("marks %+v: plan %+v", m, p)
		}
		if _, rearm := e.Kicked(Where{User: true}); rearm != nil {
			t.Errorf("marks %+v: user kick armed %+v", m, rearm)
		}
		if err := e.AtBreakpoint(0); err == nil {
			t.Errorf("marks %+v: debug exit at 0 accepted", m)
		}
	}
}
