package session

// The debugger inside runTo (det.go): the tail of a chunk that ended by
// preemption or at a privilege change, from its last exit to its recorded
// end point, which replay reaches with a breakpoint in DR0 and single
// steps. gdb's execution breakpoints go in DR1-DR3 beside it, and gdb's
// steps and watchpoints single-step there as in enter (debug_hook.go).

import (
	"github.com/samsara-vmm/samsara/internal/gdbstub"
)

// tailActive reports whether the debugger acts in runTo now (not while
// going to a position, which runs to it with no breakpoints).
func (v *vcpu) tailActive() bool {
	h := v.s.dbg
	return h != nil && h.cur != nil && h.cmd.mode != modeGoto
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
