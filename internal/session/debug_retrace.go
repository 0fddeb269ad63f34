package session

// reverse-stepi without a counter (hardware virtualization; debug_page.go):
// finding the instruction before a position whose forward step the
// debugger did not see. Positions between two exits differ there only by
// RIP and registers, so the position before now is found by running to
// now again and watching the instructions just before it, in one of two
// ways:
//
//   - walk (the first try): now's page is taken away, and every entry into
//     it is single-stepped until the vCPU leaves the page or stands at
//     now; the step that arrives at now came from the previous
//     instruction. Page traps see everything, interrupt handlers
//     included. It fails when the vCPU entered the page at now itself (a
//     call or jump from another page: the previous instruction is there).
//   - step (the second): every instruction from the stretch's start is
//     single-stepped. It fails when now lies inside an interrupt handler,
//     because on hardware virtualization an interrupt delivered on a
//     stepped entry runs its whole handler within the step
//     (debug_pushf.go, fixDeadFrameTF): measured in the emulated SVM
//     host, a __schedule hit reached from an interrupt taken in
//     __default_send_IPI_dest_field was never stood at, and the steps went
//     on to the next halt's exit.
//
// Either stops at now and hands the debugger the position before it among
// the stop's hits, or stops where it gave up with none and says why in
// traceMiss.

import (
	"errors"
	"fmt"
	"time"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// traceStepLimit bounds the single steps of one try: a stretch between two
// exits of the test recordings is a few thousand instructions; at the
// emulated SVM host's ~3,000 steps a second (trace's measured rate)
// 200,000 is about a minute, inside TestGDB's 5-minute session and the
// host runner's 5 minutes of silence; past it, reverse-continue is the
// way back.
const traceStepLimit = 200_000

// traceTimeLimit bounds one try in time too: a vCPU that runs without
// touching now's page or exiting (now was passed unseen, in a loop) is
// given up after it, as after traceStepLimit steps.
const traceTimeLimit = 2 * time.Minute

// missEnteredAt is traceMiss when the walk found the vCPU entering now's
// page at now (the step method may still find the instruction before).
const missEnteredAt = "entered its page there, from an instruction in another page"

// debugTraceState runs v from the start of target t's stretch to t by
// the order's method (debugCmd.stepAll: step, else walk).
func (v *vcpu) debugTraceState(c *chunkRun, t Position) error {
	h := v.s.dbg
	h.traceMiss = ""
	pos, prev, steps, miss, err := v.runToState(c, t, h.cmd.stepAll)
	if err != nil {
		return err
	}
	switch {
	case miss != "":
		h.traceMiss = miss
	case prev != nil:
		h.hits = append(h.hits, debugHit{pos: *prev, stop: gdbstub.Stop{Thread: v.id}})
	case !h.cmd.stepAll && steps > 0:
		h.traceMiss = missEnteredAt
	}
	return v.pause(c, pos, gdbstub.Stop{Thread: v.id})
}

// runToState runs v to target t of its current stretch: walking t's page
// (stepping every entry into it), or single-stepping everything (stepAll).
// It returns where v stands, the position before it when the last move
// was a single step, the number of moves, and why it gave up ("" when it
// stands at t).
func (v *vcpu) runToState(c *chunkRun, t Position, stepAll bool) (pos Position, prev *Position, moves int, miss string, err error) {
	// trapped: the last entry ended at a page trap, whose instruction
	// (in the page, or one touching it) is stepped next.
	trapped := false
	started := time.Now()
	for i := 0; ; i++ {
		if pos, err = v.debugPosition(c); err != nil {
			return pos, nil, i, "", err
		}
		if pos.Insns == t.Insns && pos.RIP == t.RIP && pos.Regs == t.Regs {
			return pos, prev, i, "", nil
		}
		if i >= traceStepLimit || time.Since(started) > traceTimeLimit {
			return pos, nil, i, fmt.Sprintf("not reached within %d entries and single steps or %v of its stretch's start", traceStepLimit, traceTimeLimit), nil
		}
		step := stepAll || trapped || pos.RIP&^0xfff == t.RIP&^0xfff
		if step && v.atHalt(pos.RIP) {
			// A step there changes the replay (atHalt): run instead.
			step = false
		}
		var exited bool
		if step {
			here := pos
			prev = &here
			exited, err = v.traceStep(c)
			trapped = false
		} else {
			prev = nil
			exited, trapped, err = v.traceRun(t.RIP)
			c.injectedNow = false // delivered unstepped: no TF to undo
		}
		if err != nil {
			return pos, nil, i, "", err
		}
		if exited {
			return pos, nil, i, fmt.Sprintf("not reached: the vCPU made exit %d at RIP %#x first (an interrupt handler that a single step runs whole can hold it)", v.ExitReason(), pos.RIP), nil
		}
	}
}

// traceRun runs v with rip's pages taken away (every page rip has
// translated to in the debugger's replays: debug_page.go) until it
// touches one (trapped) or exits, or for at most runToCheckEvery
// (neither: the caller checks its time bound and runs again).
func (v *vcpu) traceRun(rip uint64) (exited, trapped bool, err error) {
	pages := v.trapPages(rip)
	if len(pages) == 0 {
		return false, false, fmt.Errorf("debugger: %#x is not mapped where vCPU %d stands, nor in any earlier replay", rip, v.id)
	}
	trapped, err = v.enterPaged(pages, runToCheckEvery)
	switch {
	case trapped:
		return false, true, nil
	case err == nil:
		return true, false, nil
	case errors.Is(err, vmm.ErrInterrupted):
		return false, false, nil
	}
	return false, false, err
}
