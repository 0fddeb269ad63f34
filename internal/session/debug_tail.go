package session

// The debugger inside runTo (det.go): the tail of a chunk that ended by
// preemption or at a privilege change, from its last exit to its recorded
// end point, which replay reaches with a breakpoint in DR0 and single
// steps. gdb's execution breakpoints go in DR1-DR3 beside it, and gdb's
// steps and watchpoints single-step there as in enter (debug_hook.go).

import (
	"errors"
	"fmt"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// tailActive reports whether the debugger acts in runTo now (not while
// going to a position, which runs to it with no breakpoints).
func (v *vcpu) tailActive() bool {
	h := v.s.dbg
	return h != nil && h.cur != nil && h.cmd.mode != modeGoto && h.cmd.mode != modeTrace
}

// debugStepAt reports whether runTo's next entry, at rip, must be a
// single step for the debugger: over a breakpoint it stopped at, a step
// of this vCPU, or software watchpoints (debug_hook.go, softWatch).
func (v *vcpu) debugStepAt(rip uint64) bool {
	if !v.tailActive() {
		return false
	}
	h := v.s.dbg
	watch := h.watching() && rip >= userSpaceEnd && !v.atHalt(rip)
	if watch {
		if err := v.snapWatched(h.cur); err != nil {
			return false
		}
	}
	return h.skip[v.id] == rip || (h.cmd.mode == modeStep && h.cmd.thread == v.id) || watch
}

// tailBreakpoints are runTo's debug registers: DR0 at the end point's
// rip, and up to three of gdb's execution breakpoints in DR1-DR3.
func (v *vcpu) tailBreakpoints(rip uint64) *[8]uint64 {
	dr := &[8]uint64{0: rip, 7: dr7L0}
	if !v.tailActive() {
		return dr
	}
	n := 1
	for _, b := range v.s.dbg.cmd.bps {
		if b.kind <= gdbstub.BreakHW && n < maxHWBreakpoints {
			dr[n] = b.addr
			dr[7] |= 1 << (2 * n)
			n++
		}
	}
	return dr
}

// debugTail handles a debug exit inside runTo: a hit of one of gdb's
// breakpoints, the end of gdb's step, a watched write.
func (v *vcpu) debugTail(stepped bool) error {
	if !v.tailActive() {
		return nil
	}
	h, c := v.s.dbg, v.s.dbg.cur
	h.skip[v.id] = 0
	pos, err := v.debugPosition(c)
	if err != nil {
		return err
	}
	var hit *hwBreak
	var st gdbstub.Stop
	if stepped && h.watching() {
		if hit, st = v.watchChanged(); hit != nil && h.cmd.mode == modeCollect {
			pos = h.prePos
		}
	} else if !stepped {
		for i := range h.cmd.bps {
			if b := &h.cmd.bps[i]; b.kind <= gdbstub.BreakHW && b.addr == pos.RIP {
				hit, st = b, gdbstub.Stop{Reason: gdbstub.StopHWBreak, Thread: v.id}
				if b.kind == gdbstub.BreakSW {
					st.Reason = gdbstub.StopSWBreak
				}
				h.skip[v.id] = pos.RIP
				break
			}
		}
	}
	switch {
	case h.interrupt.Load():
		return v.pause(c, pos, gdbstub.Stop{Reason: gdbstub.StopInterrupt, Thread: v.id})
	case hit != nil && h.cmd.mode == modeCollect && !h.reached(pos):
		h.hits = append(h.hits, debugHit{pos: pos, stop: st})
		return nil
	case hit != nil:
		return v.pause(c, pos, st)
	case stepped && h.cmd.mode == modeStep && h.cmd.thread == v.id:
		return v.pause(c, pos, gdbstub.Stop{Thread: v.id})
	}
	return nil
}

// debugTrace single-steps v from the start of the target's stretch of its
// chunk (after the exit it follows) to the target's instruction count,
// and stops there. The stretch must run guest kernel code: under PVM a
// step in user mode does not stop.
func (v *vcpu) debugTrace(c *chunkRun) error {
	h := v.s.dbg
	if c.inject {
		if err := v.injectAtEntry(c); err != nil {
			return err
		}
		c.inject = false
	}
	t := h.cmd.target
	if h.pages {
		return v.debugTraceState(c, t) // debug_retrace.go
	}
	for {
		pos, err := v.debugPosition(c)
		if err != nil {
			return err
		}
		if pos.Insns >= t.Insns {
			return v.pause(c, pos, gdbstub.Stop{Thread: v.id})
		}
		if pos.RIP < userSpaceEnd {
			return fmt.Errorf("debugger: the instructions before position %v include guest user code, which cannot be single-stepped under PVM", t)
		}
		exited, err := v.traceStep(c)
		if err != nil {
			return err
		}
		if exited {
			return fmt.Errorf("debugger: a single step towards an earlier position made exit %d", v.ExitReason())
		}
	}
}

// traceStep executes one instruction of v, undoing what the step leaks
// into guest memory (debug_pushf.go). It reports a real exit, after which
// the vCPU stands at that exit, not stepped.
func (v *vcpu) traceStep(c *chunkRun) (exited bool, err error) {
	pre, err := v.Regs()
	if err != nil {
		return false, err
	}
	if err := v.SetGuestDebug(vmm.GuestDebugEnable|vmm.GuestDebugSingleStep, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	for {
		err := v.Enter()
		if errors.Is(err, vmm.ErrInterrupted) {
			continue
		}
		if err != nil {
			return false, err
		}
		break
	}
	if v.ExitReason() != vmm.ExitDebug {
		return true, v.SetGuestDebug(0, nil)
	}
	if _, err := v.fixStepLeaks(pre); err != nil {
		return false, err
	}
	if c.injectedNow {
		c.injectedNow = false
		if err := v.fixFrameTF(pre.RFLAGS); err != nil {
			return false, err
		}
	}
	return false, v.SetGuestDebug(0, nil)
}
