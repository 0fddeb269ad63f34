package session

// The replay side of the debugger (debug_target.go is the gdb side): hooks
// in the replayer's loops where a replay may stop for gdb, and the vCPU
// entry that arms breakpoints, watchpoints and single steps.
//
// Stops happen on the goroutine that is running (the replay loop before a
// chunk, or the chunk's vCPU goroutine), which then blocks until gdb
// resumes it; only one of them runs at a time, so the hook's state needs
// no lock except the interrupt flag.
//
// Breakpoints are hardware breakpoints (DR0-DR3 through
// KVM_SET_GUEST_DEBUG with KVM_GUESTDBG_USE_HW_BP), gdb's software
// breakpoints (Z0) included: nothing is ever written into guest memory,
// so the replay's page contents and digests stay those of the recording.
// A debug exit is not an exit of the chunk: it is not counted, no device
// sees it, and the next entry injects nothing (as after a kick), so the
// chunk ends where it was recorded and its end check is unchanged.
//
// Under PVM (shared/PLATFORM.md, "Stopping exactly") hardware breakpoints
// and single steps work only while the guest runs kernel code (CPL0).

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// Position is a point of a replay: before a chunk (Exits < 0) or inside
// it, Insns kernel instructions after the chunk's Exits-th exit (or its
// start), at RIP with registers hashing to Regs (regsHash).
type Position struct {
	Chunk int
	VCPU  int
	Exits int
	Insns uint64
	RIP   uint64
	Regs  uint64
}

// before orders positions in the replay's total order.
func (p Position) before(q Position) bool {
	if p.Chunk != q.Chunk {
		return p.Chunk < q.Chunk
	}
	if p.Exits != q.Exits {
		return p.Exits < q.Exits
	}
	return p.Insns < q.Insns
}

// same reports whether p and q are one point (ignoring RIP and registers,
// which they then share).
func (p Position) same(q Position) bool {
	return p.Chunk == q.Chunk && p.Exits == q.Exits && p.Insns == q.Insns
}

func (p Position) String() string {
	if p.Exits < 0 {
		return fmt.Sprintf("%d", p.Chunk)
	}
	return fmt.Sprintf("%d.%d.%d", p.Chunk, p.Exits, p.Insns)
}

// debugMode is what a replay under the debugger does until its next stop.
type debugMode int

const (
	// modeContinue runs to the next breakpoint or watchpoint hit.
	modeContinue debugMode = iota
	// modeStep executes one instruction of debugCmd.thread (stopping
	// earlier at another vCPU's hit).
	modeStep
	// modeGoto runs, with no breakpoints, to debugCmd.target.
	modeGoto
	// modeCollect runs with breakpoints to debugCmd.target, recording
	// every hit before it (reverse-continue's first pass).
	modeCollect
	// modeTrace runs, with no breakpoints, to the start of
	// debugCmd.target's stretch of its chunk and single-steps from there
	// to its instruction count (a position whose RIP is not known:
	// reverse-stepi's previous instruction).
	modeTrace
)

// debugCmd is gdb's order to a stopped replay.
type debugCmd struct {
	mode   debugMode
	thread int
	target Position
	// reason is the stop reported on reaching target (modeGoto).
	reason gdbstub.Stop
	bps    []hwBreak
	// stepAll: modeTrace without a counter single-steps the whole
	// stretch rather than walking target's page (debug_retrace.go).
	stepAll bool
}

// hwBreak is one breakpoint or watchpoint, in one debug register.
type hwBreak struct {
	kind gdbstub.BreakKind
	addr uint64
	size int
}

// debugHit is a stop: where, why, and (modeCollect) the hits before it.
type debugHit struct {
	pos  Position
	stop gdbstub.Stop
	hits []debugHit
}

// debugHook is a replay's debugger state.
type debugHook struct {
	stops chan debugHit
	cmds  chan debugCmd
	// interrupt is set by Ctrl-C (any goroutine).
	interrupt atomic.Bool
	// cmd is the order being carried out.
	cmd debugCmd
	// chunk is the index of the chunk running or about to run; base is
	// the index of the replay's first chunk (a replay from a checkpoint).
	chunk, base int
	// beforeChunk runs before each chunk (the debugger's checkpoints).
	beforeChunk func(i int) error
	// skip[v] is the RIP of a breakpoint vCPU v stopped at: its next
	// entry first steps over it (RFLAGS.RF is ignored under PVM: det.go,
	// runTo).
	skip []uint64
	// stepDone: the stepped instruction ended with a real exit; the step
	// stops before the next entry.
	stepDone bool
	// hits are modeCollect's hits so far.
	hits []debugHit
	// cur is the chunk running (debugTop), for stops inside runTo.
	cur *chunkRun
	// stopped is the machine's Stopped channel.
	stopped <-chan struct{}
	// softWatch: watchpoints are found by single-stepping guest kernel
	// code and comparing the watched bytes after each instruction, not
	// by the debug registers, which KVM's instruction emulator does not
	// check for data accesses (measured under PVM, where every guest
	// kernel instruction is emulated: a write or access watchpoint in
	// DR0 on jiffies never fired in a replay that updated it). Exact but
	// slow (one debug exit per kernel instruction while one is set).
	softWatch bool
	// snap are the watched bytes before the entry, by breakpoint index,
	// and prePos where the vCPU stood then (softWatch).
	snap   [][]byte
	prePos Position
	// pages: breakpoints and watchpoints are made by page protection, not
	// by the debug registers (debug_page.go); set without an instruction
	// counter. pageStep[v]: vCPU v's next entry single-steps the
	// instruction that touched a taken page.
	pages    bool
	pageStep []bool
	// pageOf are the guest-physical addresses each breakpoint's address
	// has translated to (debug_page.go), shared by the debugger's
	// replays.
	pageOf *bpPages
	// traceMiss says why debugTraceState gave up (empty: it did not).
	traceMiss string
}

func newDebugHook(s *Session, first debugCmd, pageOf *bpPages) *debugHook {
	return &debugHook{stops: make(chan debugHit, 1), cmds: make(chan debugCmd, 1), cmd: first,
		skip: make([]uint64, len(s.vcpus)), stopped: s.m.Stopped(), softWatch: s.opts.KernelCount,
		pages: !s.opts.KernelCount, pageStep: make([]bool, len(s.vcpus)), pageOf: pageOf}
}

// stop reports a stop and waits for gdb's next order. The wait has no
// time bound: a person is reading the stop. It ends when the debugger
// sends an order or abandons the replay (its machine stops).
func (h *debugHook) stop(pos Position, st gdbstub.Stop) error {
	h.interrupt.Store(false)
	select {
	case h.stops <- debugHit{pos: pos, stop: st, hits: h.hits}:
	case <-h.stopped:
		return errMachineStopped
	}
	h.hits = nil
	select {
	case h.cmd = <-h.cmds:
		return nil
	case <-h.stopped:
		return errMachineStopped
	}
}

// pause stops inside chunk c: the time gdb holds it does not count
// against the chunk's replay time limit.
func (v *vcpu) pause(c *chunkRun, pos Position, st gdbstub.Stop) error {
	t := time.Now()
	err := v.s.dbg.stop(pos, st)
	c.started = c.started.Add(time.Since(t))
	v.runToStarted = v.runToStarted.Add(time.Since(t))
	return err
}

// reached reports whether pos is at or past the goto or collect target.
// Without a counter (pages) two points of one stretch between exits
// differ only by RIP and registers: there, only the target itself is
// reached (the stretch's hits come in order, the target last).
func (h *debugHook) reached(pos Position) bool {
	if h.cmd.mode != modeGoto && h.cmd.mode != modeCollect {
		return false
	}
	t := h.cmd.target
	if h.pages && pos.Chunk == t.Chunk && pos.Exits == t.Exits && t.Exits >= 0 && pos.Insns == t.Insns {
		return pos.RIP == t.RIP && pos.Regs == t.Regs
	}
	return !pos.before(t)
}

// debugBeforeChunk is the replay loop's stop point before chunk i.
func (s *Session) debugBeforeChunk(i int, want *log.Chunk) error {
	h := s.dbg
	if h == nil {
		return nil
	}
	i += h.base
	h.chunk = i
	if h.beforeChunk != nil {
		if err := h.beforeChunk(i); err != nil {
			return err
		}
	}
	pos := Position{Chunk: i, VCPU: int(want.VCPU), Exits: -1}
	if int(want.VCPU) < len(s.vcpus) {
		if regs, err := s.vcpus[want.VCPU].Regs(); err == nil {
			pos.RIP, pos.Regs = regs.RIP, regsHash(regs)
		}
	}
	switch {
	case h.interrupt.Load():
		return h.stop(pos, gdbstub.Stop{Reason: gdbstub.StopInterrupt, Thread: pos.VCPU})
	case h.cmd.mode == modeGoto && h.reached(pos):
		st := h.cmd.reason
		st.Thread = pos.VCPU
		return h.stop(pos, st)
	case h.cmd.mode == modeCollect && h.reached(pos):
		return h.stop(pos, gdbstub.Stop{Thread: pos.VCPU})
	}
	return nil
}

// debugPosition is where v stands in chunk c.
func (v *vcpu) debugPosition(c *chunkRun) (Position, error) {
	d, regs, err := v.position()
	if err != nil {
		return Position{}, err
	}
	return Position{Chunk: v.s.dbg.chunk, VCPU: v.id, Exits: int(c.rec.Exits), Insns: d, RIP: regs.RIP, Regs: regsHash(regs)}, nil
}

// debugTop is runChunk's stop point before each entry (and before the
// chunk's end): an interrupt, a step that ended with a real exit, or a
// goto or collect target in this stretch of the chunk.
func (v *vcpu) debugTop(c *chunkRun) error {
	h := v.s.dbg
	if h == nil || c.want == nil {
		return nil
	}
	h.cur = c
	// The position (two reads from KVM) only when a stop may be due:
	// this runs before every entry.
	exits := int(c.rec.Exits)
	atTarget := h.cmd.target.Chunk == h.chunk && h.cmd.target.Exits == exits
	st := gdbstub.Stop{Thread: v.id}
	switch {
	case h.interrupt.Load():
		st.Reason = gdbstub.StopInterrupt
	case h.cmd.mode == modeStep && h.stepDone && h.cmd.thread == v.id:
		h.stepDone = false
	case h.cmd.mode == modeCollect && h.cmd.target.Chunk == h.chunk && exits >= h.cmd.target.Exits:
		pos, err := v.debugPosition(c)
		if err != nil || !h.reached(pos) {
			return err
		}
		return v.pause(c, pos, st)
	case h.cmd.mode == modeGoto && atTarget:
		return v.debugGoto(c)
	case h.cmd.mode == modeTrace && atTarget:
		return v.debugTrace(c)
	default:
		return nil
	}
	pos, err := v.debugPosition(c)
	if err != nil {
		return err
	}
	return v.pause(c, pos, st)
}

// debugGoto runs v to the goto target in this stretch of its chunk, as
// replay reaches a preemption point (runTo), and stops there.
func (v *vcpu) debugGoto(c *chunkRun) error {
	h := v.s.dbg
	injected := false
	if c.inject {
		before := c.injectedSinceExit
		if err := v.injectAtEntry(c); err != nil {
			return err
		}
		injected = c.injectedSinceExit && !before
		c.inject = false
	}
	t := h.cmd.target
	var pos Position
	if h.pages {
		// runTo's own page break translates RIP only where the vCPU
		// stands, which a user address in another process defeats
		// (measured in the emulated SVM host: going to race's second
		// worker hit from a replay that entered in the shell ended with
		// "exit before the preemption point"); the debugger's walk keeps
		// every page (debug_retrace.go).
		at, _, _, miss, err := v.runToState(c, t, false)
		if err != nil {
			return err
		}
		if miss != "" {
			return fmt.Errorf("debugger: going to position %v: %s", t, miss)
		}
		pos = at
	} else {
		if err := v.runTo(log.Point{KernelInsns: t.Insns, RIP: t.RIP, Regs: t.Regs}, injected, false); err != nil {
			return fmt.Errorf("debugger: going to position %v: %w", t, err)
		}
		var err error
		if pos, err = v.debugPosition(c); err != nil {
			return err
		}
	}
	st := h.cmd.reason
	st.Thread = v.id
	if st.Reason == gdbstub.StopHWBreak || st.Reason == gdbstub.StopSWBreak {
		h.skip[v.id] = pos.RIP
	}
	return v.pause(c, pos, st)
}

// enter is runChunk's entry into the guest: plain without a debugger,
// else with the breakpoints and steps gdb asked for, looping over debug
// exits (which are not chunk exits) until a real exit or a kick.
func (v *vcpu) enter(c *chunkRun) error {
	h := v.s.dbg
	if h == nil || c.want == nil {
		return v.Enter()
	}
	for {
		if h.interrupt.Load() {
			return vmm.ErrInterrupted
		}
		stepping, stepOver, err := v.armDebug()
		if err != nil {
			return err
		}
		pre, err := v.Regs()
		if err != nil {
			return err
		}
		if err := v.snapWatched(c); err != nil {
			return err
		}
		var pages []uint64
		if h.pages && !stepping && !stepOver && !h.pageStep[v.id] {
			pages = v.debugPages(c)
		}
		h.pageStep[v.id] = false
		trapped, err := v.enterPaged(pages, 0)
		h.skip[v.id] = 0
		if trapped {
			// Not a chunk exit either (as a debug exit, below).
			c.inject, c.injectedNow = false, false
			if err := v.pageTrap(c); err != nil {
				return err
			}
			v.debugProgress(c)
			continue
		}
		if err != nil {
			return err
		}
		if v.ExitReason() != vmm.ExitDebug {
			c.injectedNow = false
			h.stepDone = stepping
			// A single step left armed would make the KVM_RUN that
			// completes this exit's I/O (vmm.FlushPendingIO, at the next
			// chunk's start) stop with a debug exit.
			if err := v.SetGuestDebug(0, nil); err != nil {
				return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
			}
			v.dbgArmed = false
			return nil
		}
		// Not a chunk exit: the next entry injects nothing, as after a
		// kick.
		c.inject = false
		if _, err := v.fixStepLeaks(pre); err != nil {
			return err
		}
		if c.injectedNow {
			if err := v.fixFrameTF(pre.RFLAGS); err != nil {
				return err
			}
		}
		c.injectedNow = false
		if err := v.debugExit(c, stepping, stepOver); err != nil {
			return err
		}
		v.debugProgress(c)
	}
}

// debugProgress restarts the chunk's replay time limit (replayChunkLimit,
// which tells a diverged replay) after a debug exit or page trap: the
// vCPU has executed up to it, and a chunk the debugger single-steps or
// traps through takes far longer than its replay (measured in the
// emulated SVM host: a continue from a breakpoint in race's worker,
// whose loop is on the breakpoint's page, ended with "replay of the
// chunk made no progress for 2m0s" before the next hit).
func (v *vcpu) debugProgress(c *chunkRun) {
	c.started = time.Now()
}

// armDebug sets the vCPU's guest debugging for its next entry: the
// breakpoints of the order, a single step when stepping this vCPU or
// stepping over the breakpoint it stopped at.
func (v *vcpu) armDebug() (stepping, stepOver bool, err error) {
	h := v.s.dbg
	var dr [8]uint64
	control := uint32(0)
	if h.cmd.mode != modeGoto && h.cmd.mode != modeTrace {
		stepping = h.cmd.mode == modeStep && h.cmd.thread == v.id
		watching := h.watching()
		var rip uint64
		if stepping || watching || h.skip[v.id] != 0 || h.pageStep[v.id] {
			regs, err := v.Regs()
			if err != nil {
				return false, false, err
			}
			rip = regs.RIP
		}
		stepOver = h.skip[v.id] != 0 && rip == h.skip[v.id]
		// Page breakpoints keep the execution breakpoints in the debug
		// registers too: where those fire (real SVM/VMX hosts) they also
		// catch an address in a process the page traps did not cover
		// (debug_page.go); where they do not (the emulated SVM host) they
		// cost nothing.
		control, dr = armBreakpoints(h.cmd.bps, stepOver, h.softWatch || h.pages)
		// Software watchpoints step guest kernel code only: under PVM a
		// single step does not stop in user mode (PLATFORM.md). Page
		// breakpoints step only what touched a taken page (pageStep).
		watch := watching && rip >= userSpaceEnd && !h.pages
		if (stepping || stepOver || watch || h.pageStep[v.id]) && !v.atHalt(rip) {
			control |= vmm.GuestDebugEnable | vmm.GuestDebugSingleStep
		}
	}
	if control == 0 && !v.dbgArmed {
		// Already off (runTo and the real-exit path leave it off).
		return stepping, stepOver, nil
	}
	if err := v.SetGuestDebug(control, &dr); err != nil {
		return false, false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	v.dbgArmed = control != 0
	return stepping, stepOver, nil
}

// atHalt reports whether the vCPU is at HLT or at STI followed by HLT
// (the kernel's safe_halt). A single step there changes the replay
// (measured under PVM: stepping every instruction of a chunk that ended at
// native_safe_halt's HLT made it end elsewhere), so that entry runs
// without a step and the HLT's exit ends it, which ends a step too.
func (v *vcpu) atHalt(rip uint64) bool {
	// HLT is F4, STI FB (Intel SDM vol. 2).
	b := v.InstructionBytes(rip)
	return len(b) > 0 && (b[0] == 0xF4 || len(b) > 1 && b[0] == 0xFB && b[1] == 0xF4)
}

// DR7 fields (Intel SDM vol. 3, 17.2.4): enable bit Ln at 2n, R/Wn at
// 16+4n (00 execute, 01 write, 11 read or write), LENn at 18+4n (00 one
// byte, 01 two, 11 four, 10 eight).
const (
	dr7RWWrite     = 1
	dr7RWReadWrite = 3
)

// dr7Len is the LEN encoding of a watched size.
var dr7Len = map[int]uint64{1: 0, 2: 1, 4: 3, 8: 2}

// armBreakpoints is the control and DR0-DR7 for bps (execution
// breakpoints left out when stepping over one).
func armBreakpoints(bps []hwBreak, noExec, softWatch bool) (uint32, [8]uint64) {
	var dr [8]uint64
	for i, b := range bps {
		rw := uint64(0)
		switch {
		case b.kind <= gdbstub.BreakHW:
			if noExec {
				continue
			}
		case softWatch:
			continue
		case b.kind == gdbstub.WatchWrite:
			rw = dr7RWWrite
		default:
			// x86 has no read-only watchpoint: reads and writes.
			rw = dr7RWReadWrite
		}
		dr[i] = b.addr
		dr[7] |= 1<<(2*i) | rw<<(16+4*i)
		if rw != 0 {
			dr[7] |= dr7Len[b.size] << (18 + 4*i)
		}
	}
	if dr[7] == 0 {
		return 0, dr
	}
	return vmm.GuestDebugEnable | vmm.GuestDebugUseHWBP, dr
}

// DR6 bits (SDM vol. 3, 17.2.3): B0-B3 name the breakpoint that fired,
// BS a single step.
const (
	dr6Hits = 0xf
	dr6BS   = 1 << 14
)

// debugExit handles a debug exit: a breakpoint or watchpoint hit, or the
// end of a single step; it stops when the order says so.
func (v *vcpu) debugExit(c *chunkRun, stepping, stepOver bool) error {
	h := v.s.dbg
	_, _, dr6 := v.DebugExit()
	pos, err := v.debugPosition(c)
	if err != nil {
		return err
	}
	hit, st := h.classify(dr6, pos, v.id)
	if hit == nil && h.watching() {
		if hit, st = v.watchChanged(); hit != nil && h.cmd.mode == modeCollect {
			// Going backwards, a write is found before it happens: gdb
			// then shows the values swapped.
			pos = h.prePos
		}
	}
	switch {
	case h.interrupt.Load():
		return v.pause(c, pos, gdbstub.Stop{Reason: gdbstub.StopInterrupt, Thread: v.id})
	case hit == nil && stepping:
		return v.pause(c, pos, gdbstub.Stop{Thread: v.id})
	case hit == nil:
		// The step over a breakpoint is done (stepOver), or a debug exit
		// of nothing armed: go on.
		return nil
	case hit.kind <= gdbstub.BreakHW:
		h.skip[v.id] = pos.RIP
	}
	if h.cmd.mode == modeCollect && !h.reached(pos) {
		h.hits = append(h.hits, debugHit{pos: pos, stop: st})
		return nil
	}
	return v.pause(c, pos, st)
}

// classify names the breakpoint of a debug exit: by DR6, else (a host
// that does not report DR6) by RIP for execution breakpoints.
func (h *debugHook) classify(dr6 uint64, pos Position, vcpu int) (*hwBreak, gdbstub.Stop) {
	var hit *hwBreak
	for i := range h.cmd.bps {
		b := &h.cmd.bps[i]
		if dr6&dr6Hits&(1<<i) != 0 || (dr6&dr6Hits == 0 && b.kind <= gdbstub.BreakHW && b.addr == pos.RIP) {
			hit = b
			break
		}
	}
	if hit == nil {
		return nil, gdbstub.Stop{}
	}
	st := gdbstub.Stop{Reason: gdbstub.StopHWBreak, Thread: vcpu}
	switch {
	case hit.kind == gdbstub.BreakSW:
		st.Reason = gdbstub.StopSWBreak
	case hit.kind >= gdbstub.WatchWrite:
		st.Reason, st.Addr, st.Watch = gdbstub.StopWatch, hit.addr, hit.kind
	}
	return hit, st
}

// watching reports whether software watchpoints are armed (softWatch, or
// page watchpoints: debug_page.go).
func (h *debugHook) watching() bool {
	if !(h.softWatch || h.pages) || h.cmd.mode == modeGoto || h.cmd.mode == modeTrace {
		return false
	}
	for _, b := range h.cmd.bps {
		if b.kind >= gdbstub.WatchWrite {
			return true
		}
	}
	return false
}

// readWatched reads the bytes watchpoint b covers through v's page
// tables (nil when unmapped: a change to or from unmapped counts).
func (v *vcpu) readWatched(b hwBreak) []byte {
	sr, err := v.Sregs()
	if err != nil {
		return nil
	}
	out, err := readVirtual(v.s.m.Memory(), sr.CR3, b.addr, b.size)
	if err != nil {
		return nil
	}
	return out
}

// snapWatched remembers the watched bytes and the position before an
// entry (softWatch).
func (v *vcpu) snapWatched(c *chunkRun) error {
	h := v.s.dbg
	if !h.watching() {
		return nil
	}
	h.snap = h.snap[:0]
	for _, b := range h.cmd.bps {
		var cur []byte
		if b.kind >= gdbstub.WatchWrite {
			cur = v.readWatched(b)
		}
		h.snap = append(h.snap, cur)
	}
	var err error
	h.prePos, err = v.debugPosition(c)
	return err
}

// watchChanged compares the watched bytes with the snapshot.
func (v *vcpu) watchChanged() (*hwBreak, gdbstub.Stop) {
	h := v.s.dbg
	for i := range h.cmd.bps {
		b := &h.cmd.bps[i]
		if b.kind < gdbstub.WatchWrite || i >= len(h.snap) {
			continue
		}
		if cur := v.readWatched(*b); string(cur) != string(h.snap[i]) {
			return b, gdbstub.Stop{Reason: gdbstub.StopWatch, Thread: v.id, Addr: b.addr, Watch: b.kind}
		}
	}
	return nil, gdbstub.Stop{}
}

// errDebugAbandoned stops a replay the debugger no longer needs (it went
// back in time with another one).
var errDebugAbandoned = errors.New("debugger: replay abandoned for another")
