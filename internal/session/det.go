package session

// The serialized recorder and the replayer (DESIGN.md, "One log, one
// replayer, two recorders"). One vCPU runs at a time; a chunk is one turn
// of one vCPU. Everything a chunk does is a function of the machine state
// at its start, because:
//
//   - guest time is virtual (clock.go): it advances by a fixed amount per
//     exit and, at each chunk's end, by the host time the recorder
//     measured for the chunk, which the log holds; so timers fire at the
//     same points in both runs;
//   - interrupts are injected only at the first entry of a chunk and at
//     entries that follow a real exit, never after a kick (EINTR), so they
//     arrive at the same instruction in both runs;
//   - exits (port I/O, MMIO, HLT, interrupt windows) happen at the same
//     guest instructions given the same state, so "the vCPU's k-th exit" is
//     a point replay can find again without any counter;
//   - a chunk that does not exit (a guest kernel spinning on another vCPU)
//     is preempted by a wall-clock watchdog, but only while it runs guest
//     kernel code: there, KVM's insn_emulation statistic counts it exactly
//     and replay lands on the same instruction with a hardware breakpoint
//     and single-steps (measured in internal/pmc). Guest user code cannot
//     be stopped at an exact point on a host without a PMU (PLATFORM.md;
//     these machines have none), so a vCPU is never preempted in user mode.
//
// Host inputs go through internal/nde (the RTC's wall time).

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// Chunk limits of the serialized recorder.
const (
	// chunkExitBudget ends a chunk after this many exits, so a vCPU that
	// keeps exiting (console output, timer programming) takes turns with
	// the others. 64 exits is a few milliseconds of guest kernel work here;
	// smaller costs more token hand-offs, larger delays IPIs to other vCPUs.
	chunkExitBudget = 64
	// preemptAfter is how long a chunk may run in the guest without an exit
	// before the watchdog tries to preempt it (a guest kernel spinning on a
	// lock held by a vCPU that is not running). The emulated kernel runs
	// ~1.4 M instructions/s, so this is ~14k instructions of spinning.
	// Replay reaches each preemption point with a breakpoint and single
	// steps, two debug exits (~40 us each) per pass of the loop the point
	// lies in, so the replay cost of a point grows with this. Measured on
	// 2 vCPUs (record / replay): 50 ms gave dedup 8.9 s / 29 s; 10 ms gave
	// dedup 6.9 s / 16.6 s and streamcluster 15.8 s / 15.5 s; 2 ms made
	// streamcluster's recording run for minutes (the kicks every 2 ms
	// outpaced its progress).
	preemptAfter = 10 * time.Millisecond
	// preemptInjectedAfter: a chunk that took an interrupt at its start
	// and then ran this long without an exit is spinning inside the
	// handler (measured: streamcluster's timer interrupt spinning in
	// ktime_get on a timekeeping seqcount that the other vCPU, not
	// running, held; the recording stalled), so it may be preempted too.
	// Ten watchdog periods: handlers that end with their EOI exit long
	// before.
	preemptInjectedAfter = 10 * preemptAfter
	// userSpinLimit bounds how long a chunk may stay in guest user mode
	// without an exit before the recording fails: user code cannot be
	// preempted exactly without a PMU (see the file comment). With state
	// stops (det_stop.go, the default) such a chunk ends at one long
	// before; the limit is for --state-stops=false, and for a vCPU whose
	// stops keep being refused.
	userSpinLimit = 60 * time.Second
	// runToCheckEvery: how often runTo's vCPU is interrupted to check
	// replayChunkLimit (a breakpoint that is never hit must not hang the
	// replay). Rare enough to cost nothing.
	runToCheckEvery = time.Second
	// replayChunkLimit bounds one replayed chunk; a replay that stops
	// making progress has diverged.
	replayChunkLimit = 120 * time.Second
)

// DivergenceError is a replay that did not reproduce the recording.
type DivergenceError struct {
	Chunk int    // index of the chunk record (0-based)
	VCPU  int    // vCPU of that chunk
	What  string // what differed
	Want  string
	Got   string
}

func (e *DivergenceError) Error() string {
	return fmt.Sprintf("replay diverged at chunk %d (vcpu %d): %s: recorded %s, replayed %s", e.Chunk, e.VCPU, e.What, e.Want, e.Got)
}

// chunkResult is how one chunk ended.
type chunkResult struct {
	rec log.Chunk
	err error
	// stops precede rec in the log when it ended at a state stop.
	stops []*log.StateStop
}

// detLoop is a vCPU's goroutine in the serialized recorder and the
// replayer: it runs one chunk per turn and reports the result.
// It sends on ready once set up, before it waits for turns.
func (v *vcpu) detLoop(done chan<- chunkResult, ready chan<- struct{}) {
	v.LockThread()
	// The fast-forward timer changes the thread's signal mask and the
	// vCPU's KVM_RUN mask: done once, before the first chunk, so no chunk
	// runs under a different setting than the next.
	// (Measured: creating it at the first preemption point instead, between
	// the chunk's interrupt injection and its KVM_RUN, made 2 of 5 replays
	// of a dedup recording diverge there; created here, 0 of 6.)
	timer, timerErr := kvmsys.NewThreadTimer(v.FD(), v.TID())
	if timerErr == nil {
		v.ffTimer, v.ffRate = timer, ffSeedRate
	}
	ready <- struct{}{}
	for {
		waitFrom := time.Now()
		select {
		case <-v.s.m.Stopped():
			return
		case want := <-v.turn:
			v.lap(PhaseWait, waitFrom)
			if timerErr != nil {
				done <- chunkResult{err: timerErr}
				continue
			}
			v.stops = nil
			rec, err := v.runChunk(want)
			done <- chunkResult{rec: rec, err: err, stops: v.stops}
		}
	}
}

// chunkRun is one chunk of the serialized recorder or the replayer while
// it runs.
type chunkRun struct {
	// want is the recorded chunk to reproduce (replay), nil when recording.
	want *log.Chunk
	// rec is the chunk so far.
	rec log.Chunk
	// inject: the next entry may inject an interrupt (the chunk's first
	// entry, or the first after a real exit; never after a kick).
	inject bool
	// injectedSinceExit: an interrupt was injected since the last exit (or
	// the chunk start); the recorder does not preempt then.
	injectedSinceExit bool
	// started is the chunk's wall-clock start.
	started time.Time
	// matchNext and matchGap pace the state-matching tries of a chunk
	// that keeps failing them (det_match.go, maybeStateMatch).
	matchNext time.Time
	matchGap  time.Duration
	// injectedNow: an interrupt was injected for the next entry (the
	// debugger's single steps fix up its frame: debug_pushf.go).
	injectedNow bool
	// injections lists the vectors injected and the exit count each
	// followed, for a divergence report (replayEndNote).
	injections []injectionAt
	// tries counts the serialized recorder's preemption tries by what
	// they found, for the error of a chunk that could not be preempted.
	tries preemptTries
}

// preemptTries is what the preemption tries of one chunk found: how often
// the vCPU stood in user mode (and at which RIPs, the first few), and how
// often in kernel mode at a point that was not preemptable.
type preemptTries struct {
	user, kernel int
	rips         []uint64 // distinct user-mode RIPs, up to maxTryRIPs
	lastUser     uint64
}

// maxTryRIPs bounds the user-mode RIPs an error names: a spin loop has a
// few; more than that says the vCPU was computing.
const maxTryRIPs = 8

func (t *preemptTries) noteUser(rip uint64) {
	t.user++
	t.lastUser = rip
	for _, r := range t.rips {
		if r == rip {
			return
		}
	}
	if len(t.rips) < maxTryRIPs {
		t.rips = append(t.rips, rip)
	}
}

func (t *preemptTries) String() string {
	rips := make([]string, len(t.rips))
	for i, r := range t.rips {
		rips[i] = fmt.Sprintf("%#x", r)
	}
	more := ""
	if len(t.rips) == maxTryRIPs {
		more = " and more"
	}
	return fmt.Sprintf("%d tries found it in user mode (RIPs %s%s; the last %#x), %d in kernel mode at no preemptable point",
		t.user, strings.Join(rips, " "), more, t.lastUser, t.kernel)
}

// injectionAt is an interrupt injected in a chunk: its vector, after how
// many of the chunk's exits.
type injectionAt struct {
	vec   uint8
	exits uint32
}

// runChunk runs one chunk. In replay, want is the recorded chunk to
// reproduce; in record, want is nil.
func (v *vcpu) runChunk(want *log.Chunk) (log.Chunk, error) {
	c := &chunkRun{want: want, rec: log.Chunk{VCPU: uint32(v.id)}, inject: true}
	if want != nil && v.s.debugWrites != nil {
		defer v.keepDebugEnd(c)
	}
	if err := v.BeginChunk(); err != nil {
		return c.rec, err
	}
	var err error
	if v.last, err = v.kernelInsns(); err != nil {
		return c.rec, err
	}
	if want == nil {
		if err := v.s.newDirtyPeriod(); err != nil { // det_stop.go
			return c.rec, err
		}
	}
	c.started = time.Now()
	v.traceChunkStart(want != nil)
	if err := v.expandChunk(c); err != nil {
		return c.rec, err
	}
	defer v.startChunkTimers(want != nil, c.started)()
	if err := v.noteExitRegs(want == nil); err != nil {
		return c.rec, err
	}
	for {
		if err := v.debugTop(c); err != nil {
			return c.rec, err
		}
		if want != nil && c.rec.Exits == want.Exits {
			return v.replayChunkEnd(c)
		}
		if want != nil && time.Since(c.started) > replayChunkLimit {
			return c.rec, fmt.Errorf("replay of the chunk made no progress for %v", replayChunkLimit)
		}
		if want == nil && v.s.opts.KernelCount {
			t := time.Now()
			preempted, err := v.maybePreempt(c)
			v.lap(PhaseStops, t)
			if preempted || err != nil {
				return c.rec, err
			}
		}
		exited := false // a state-matching try ran into a real exit
		if want == nil && !v.s.opts.KernelCount && v.s.opts.StateMatch {
			t := time.Now()
			out, err := v.maybeStateMatch(c) // det_match.go
			v.lap(PhaseStops, t)
			switch {
			case err != nil:
				return c.rec, err
			case out == matchStopped:
				return v.finishStateMatch(c.rec)
			}
			exited = out == matchExited
		}
		if want == nil && !v.s.opts.KernelCount && !exited && v.stopDue(c) {
			// No counter at all: a kick found the chunk anywhere in
			// guest code (det_stop.go).
			if stopped, err := v.stateStop(c); stopped || err != nil {
				return c.rec, err
			}
		}
		if !exited {
			if interrupted, err := v.enterChunk(c); err != nil || interrupted {
				if err != nil {
					return c.rec, err
				}
				continue
			}
		}
		c.inject, c.injectedSinceExit = true, false
		c.rec.Exits++
		t := time.Now()
		reason, mustEnd, err := v.handleChunkExit()
		if err == nil {
			err = v.noteExitRegs(want == nil)
		}
		v.lap(PhaseExit, t)
		if err == nil && want != nil {
			err = v.expandExit() // trace_events.go
		}
		switch {
		case err != nil:
			return c.rec, err
		case want != nil:
		case mustEnd || c.rec.Exits >= chunkExitBudget:
			return v.finishChunk(c.rec, reason)
		case reason == log.ReasonYield && v.s.othersRunnable(v):
			// The guest kernel waits, most likely for another vCPU:
			// hand the turn over (det_run.go picks the next one).
			return v.finishChunk(c.rec, reason)
		}
	}
}

// enterChunk injects what may be injected and runs the vCPU to its next
// exit; interrupted reports a kick (EINTR), after which nothing may be
// injected before the next real exit.
func (v *vcpu) enterChunk(c *chunkRun) (interrupted bool, err error) {
	if err := v.injectAtEntry(c); err != nil {
		return false, err
	}
	t := time.Now()
	err = v.expandEnter(c) // trace_expand.go, debug_hook.go: a trace's steps, the debugger's stops
	v.lap(PhaseGuest, t)
	if errors.Is(err, vmm.ErrInterrupted) {
		c.inject = false
		if v.s.m.IsStopped() {
			// Stopped from outside (the stall bound, a signal, an
			// error): the chunk stands where the kick found it, which
			// may be no point replay can find, so it is not logged.
			return true, errMachineStopped
		}
		return true, nil
	}
	return false, err
}

// injectAtEntry injects a pending interrupt when the chunk's next entry
// may (chunkRun.inject).
func (v *vcpu) injectAtEntry(c *chunkRun) error {
	if !c.inject {
		return nil
	}
	vec, injected, err := v.Inject()
	if err != nil {
		return err
	}
	if err := v.expandInject(vec, injected); err != nil {
		return err
	}
	c.injectedSinceExit = c.injectedSinceExit || injected
	c.injectedNow = injected
	if injected {
		c.injections = append(c.injections, injectionAt{vec, c.rec.Exits})
	}
	v.traceInject(c.want != nil, c.rec.Exits, injected)
	return nil
}

// replayChunkEnd ends a replayed chunk that has made its recorded exits:
// at a preemption or privilege-change point it runs on to the recorded
// end point first.
func (v *vcpu) replayChunkEnd(c *chunkRun) (log.Chunk, error) {
	atExit := endsAtExit(c.want.Reason)
	if c.want.Reason == log.ReasonStateStop {
		if err := v.applyStateStop(c); err != nil { // det_stop.go
			return c.rec, err
		}
		rec, err := v.finishChunk(c.rec, log.ReasonStateStop)
		if err == nil && (rec.End.RIP != c.want.End.RIP || rec.End.Regs != c.want.End.Regs) {
			v.endNote = v.replayEndNote(c, false)
		}
		return rec, err
	}
	if !atExit {
		// The recorder preempted only after the guest had taken any
		// interrupt injected at this entry, so inject it the same way
		// and let runTo's first entry deliver it.
		injected := c.injectedSinceExit
		if c.inject {
			before := c.injectedSinceExit
			if err := v.injectAtEntry(c); err != nil {
				return c.rec, err
			}
			injected = c.injectedSinceExit && !before
		}
		if err := v.expandRunTo(c, c.want.End, injected, c.want.Reason == log.ReasonStateMatch); err != nil {
			return c.rec, err
		}
	}
	var rec log.Chunk
	var err error
	if c.want.Reason == log.ReasonStateMatch {
		rec, err = v.finishStateMatch(c.rec)
	} else {
		rec, err = v.finishChunk(c.rec, c.want.Reason)
	}
	// Described only when the end differs (det_run.go checks it and
	// prints the note): not on every replayed chunk.
	if err == nil && (rec.End.RIP != c.want.End.RIP || rec.End.Regs != c.want.End.Regs) {
		v.endNote = v.replayEndNote(c, atExit)
	}
	return rec, err
}

// replayEndNote says what a replayed chunk did: its exits (the last one's
// access when the chunk ended at it), the interrupts it injected, and its
// registers at the end. The log holds only a hash of the recorded
// registers; this is the replay's side of a "registers at the chunk end"
// divergence.
func (v *vcpu) replayEndNote(c *chunkRun, atExit bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chunk reason %v, %d exits", c.want.Reason, c.rec.Exits)
	if atExit && c.rec.Exits > 0 {
		fmt.Fprintf(&b, ", the last: %s", v.ExitSummary())
	}
	if len(c.injections) == 0 {
		b.WriteString("; no interrupt injected")
	}
	for i, in := range c.injections {
		sep := ","
		if i == 0 {
			sep = "; injected"
		}
		fmt.Fprintf(&b, "%s %#x after %d exits", sep, in.vec, in.exits)
	}
	if r, err := v.Regs(); err == nil {
		fmt.Fprintf(&b, "; at the end rip %#x rsp %#x rflags %#x rax %#x rbx %#x rcx %#x rdx %#x rsi %#x rdi %#x rbp %#x r12 %#x",
			r.RIP, r.RSP, r.RFLAGS, r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RBP, r.R12)
	}
	return b.String()
}

// maybePreempt is where the serialized recorder preempts: after a kick
// (EINTR), and, after an interrupt was injected since the last exit, only
// once preemptInjectedAfter has passed. Replay finds the point with
// breakpoints and single steps, and PVM need not deliver a queued
// interrupt at the same instruction while single-stepping as it does in a
// plain run, so replay's first run after such an injection never
// single-steps (runTo); an interrupt handler usually exits soon anyway
// (its EOI write), which ends the segment.
func (v *vcpu) maybePreempt(c *chunkRun) (bool, error) {
	elapsed := time.Since(c.started)
	if c.inject || elapsed < spinCheckAfter || c.injectedSinceExit && elapsed < preemptInjectedAfter {
		return false, nil
	}
	try := elapsed >= preemptAfter
	if !try && v.s.opts.SpinChecks {
		var err error
		if try, err = v.inSpin(); err != nil {
			return false, err
		}
	}
	if !try {
		return false, nil
	}
	return v.tryPreempt(c)
}

// handleChunkExit is what every chunk does at a real exit, in both
// recorders and the replayer alike: virtual time steps, the exit is
// handled, due timers fire. It returns the reason a chunk ending here
// would give, and mustEnd when the chunk cannot go on (the machine
// stopped, or the vCPU no longer runs).
func (v *vcpu) handleChunkExit() (reason log.Reason, mustEnd bool, err error) {
	m := v.s.m
	reason = exitReason(v.ExitReason())
	if v.ExitIsYield() {
		reason = log.ReasonYield
	}
	m.AdvanceTime(nsPerExit, false)
	if v.last, err = v.kernelInsns(); err != nil {
		return reason, true, err
	}
	if err := v.HandleExit(); err != nil {
		return reason, true, err
	}
	if err := m.NDEErr(); err != nil {
		return reason, true, err
	}
	m.PollTimers()
	switch {
	case m.IsStopped():
		return log.ReasonExit, true, nil
	case !v.Running():
		return log.ReasonHalt, true, nil
	}
	return reason, false, nil
}

// startChunkTimers starts what interrupts a chunk from outside: when
// recording, the watchdog that kicks the vCPU when its chunk should be
// preempted (preemptionNeeded), checking every preemptAfter (every
// spinCheckAfter with spin checks), so a chunk that never exits comes
// back to runChunk (a kick can be lost when it lands between two
// KVM_RUNs; the next tick repeats it). It kicks only when needed: each
// kick is an EINTR and each preemption a point replay must find by
// breakpoint. (While record/replay still requested interrupt windows,
// kicks changed where PVM opened them: replaying with a signal every
// millisecond, Options.SignalStorm, made 3 of 5 replays diverge; without
// window requests 16 of 16 matched.) When replaying, the signal storm if
// asked for. It returns the function that stops them.
func (v *vcpu) startChunkTimers(replay bool, started time.Time) (stop func()) {
	need := func() bool { return v.s.preemptionNeeded(v, started) || v.s.stopWanted(started) }
	if !replay && !v.s.opts.KernelCount {
		if !v.s.opts.StateMatch && !v.s.stopsOn() {
			return func() {} // nothing to stop at: chunks end at exits only
		}
		// No counter: the kicks let maybeStateMatch look for a spin to
		// stop at (det_match.go), and stopDue for a state stop
		// (det_stop.go), at the pace of the counted recorder's.
		return startWatchdog(preemptAfter, preemptAfter, need, v.Kick)
	}
	if !replay {
		period := preemptAfter
		if v.s.opts.SpinChecks && len(v.s.m.Spins()) > 0 {
			period = spinCheckAfter // det_spin.go
		}
		return startWatchdog(period, period, need, v.Kick)
	}
	if d := v.s.opts.SignalStorm; d > 0 {
		// Diagnostics: interrupt KVM_RUN often during replay, to measure
		// whether EINTRs are visible to the guest (they must not be).
		return startWatchdog(d, d, nil, func() {
			if tid := v.TID(); tid != 0 {
				unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
			}
		})
	}
	return func() {}
}

// startWatchdog calls kick after first and then every period, when need
// (if not nil) says so, until the returned stop is called; stop returns
// once the watchdog has ended, so no kick follows it.
func startWatchdog(first, period time.Duration, need func() bool, kick func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if need == nil || need() {
					kick()
				}
				t.Reset(period)
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// preemptionNeeded says whether a chunk running without exits should be
// cut: when another vCPU is waiting to run (the running one may be
// spinning on it), or after timeWaitAfter alone (a kernel waiting for time
// to pass, which only preemptions advance; see nsPerPreemption). Fewer
// preemptions mean fewer points replay must find by breakpoint.
func (s *Session) preemptionNeeded(cur *vcpu, started time.Time) bool {
	return time.Since(started) >= timeWaitAfter || s.othersRunnable(cur)
}

// othersRunnable reports whether a vCPU other than cur can run now.
func (s *Session) othersRunnable(cur *vcpu) bool {
	s.m.Lock()
	defer s.m.Unlock()
	for _, v := range s.vcpus {
		if v != cur && v.RunnableLocked() {
			return true
		}
	}
	return false
}

// timeWaitAfter: a chunk alone on the machine is preempted after this long
// without an exit, so that a guest kernel busy-waiting for a timer sees
// guest time move (the chunk's end adds the time it ran: clock.go). Long,
// because a kick can perturb the guest (startChunkTimers).
const timeWaitAfter = time.Second

// tryPreempt ends the chunk at the current point if the vCPU is in guest
// kernel mode (exactly countable); in user mode it lets the vCPU go on,
// up to userSpinLimit.
func (v *vcpu) tryPreempt(c *chunkRun) (bool, error) {
	need := v.s.preemptionNeeded(v, c.started)
	stop := v.stopDue(c)
	if !need && !stop {
		return false, nil
	}
	ok, user, err := v.preemptablePoint()
	if err != nil {
		return false, err
	}
	if user && stop {
		// Guest user mode has no count on PVM: a state stop
		// (det_stop.go).
		if stopped, err := v.stateStop(c); stopped || err != nil {
			return stopped, err
		}
	}
	if !need {
		return false, nil
	}
	if !ok {
		if user {
			if r, err := v.Regs(); err == nil {
				c.tries.noteUser(r.RIP)
			}
		} else {
			c.tries.kernel++
		}
	}
	if user && time.Since(c.started) > userSpinLimit {
		return false, fmt.Errorf("vcpu %d ran guest user code for %v without an exit; it cannot be preempted at an exact point on a host without a PMU (see README, platform notes): %v; %s",
			v.id, userSpinLimit, &c.tries, v.s.othersState(v))
	}
	if !ok {
		return false, nil
	}
	c.rec, err = v.finishChunk(c.rec, log.ReasonBudget)
	return true, err
}

// othersState names where the vCPUs other than cur stand: run state,
// RIP, CPL and last exit, as a stall error does. In the serialized
// recorder they wait for a turn, out of KVM_RUN, so their registers can
// be read from here.
func (s *Session) othersState(cur *vcpu) string {
	var b []string
	for _, v := range s.vcpus {
		if v == cur {
			continue
		}
		s.m.Lock()
		state, runnable := v.StateLocked(), v.RunnableLocked()
		s.m.Unlock()
		where := ""
		if r, err := v.Regs(); err == nil {
			if sr, err := v.Sregs(); err == nil {
				where = fmt.Sprintf(" at RIP %#x CPL %d", r.RIP, sr.CS.Selector&3)
			}
		}
		b = append(b, fmt.Sprintf("vcpu %d %s%s, last exit %d, runnable %v", v.id, state, where, v.ExitReason(), runnable))
	}
	return strings.Join(b, "; ")
}

// preemptablePoint reports whether the vCPU stands where a chunk may end
// by preemption, a point replay can find again (both recorders ask it):
// guest kernel code (user reports guest user mode instead), not a REP
// string instruction (atRepString), no event queued for delivery
// (vmm.EventQueued: the fresh-clone make test of 2026-12-07 diverged
// twice at a point counted one past a kernel access to a user page whose
// #PF was queued, not delivered), and real progress since the chunk's
// last exit or start: right after an exit the only kernel "progress" may
// be KVM completing the exit's I/O instruction, and replay's breakpoint
// cannot land between that completion and the next instruction.
func (v *vcpu) preemptablePoint() (ok, user bool, err error) {
	s, err := v.Sregs()
	if err != nil {
		return false, false, err
	}
	if s.CS.Selector&3 != 0 {
		return false, true, nil
	}
	if n, err := v.kernelInsns(); err != nil || n < v.last+2 {
		return false, false, err
	}
	regs, err := v.Regs()
	if err != nil {
		return false, false, err
	}
	if v.atRepString(regs.RIP) {
		return false, false, nil
	}
	queued, err := v.EventQueued()
	return !queued, false, err
}

// finishChunk fills the chunk's end point: the registers, and the kernel
// instructions since the chunk's last exit (or its start).
func (v *vcpu) finishChunk(rec log.Chunk, reason log.Reason) (log.Chunk, error) {
	rec.Reason = reason
	n, err := v.kernelInsns()
	if err != nil {
		return rec, err
	}
	regs, err := v.Regs()
	if err != nil {
		return rec, err
	}
	rec.End = log.Point{KernelInsns: n - v.last, RIP: regs.RIP, RCX: regs.RCX, Regs: regsHash(regs)}
	if reason == log.ReasonStateStop {
		// Replay puts a stop's state in place instead of counting its
		// way there (det_stop.go): the count since the last exit is not
		// part of the end point.
		rec.End.KernelInsns = 0
	}
	if v.s.tracing() {
		v.s.log.Debug(fmt.Sprintf("CHUNK vcpu %d reason %v exits %d rip %#x vt %d regs %+v", v.id, reason, rec.Exits, regs.RIP, v.s.m.VirtualTime(), *regs))
	}
	return rec, nil
}

// exitReason maps a KVM exit to the chunk reason it would give.
func exitReason(r uint32) log.Reason {
	switch r {
	case vmm.ExitIO:
		return log.ReasonIO
	case vmm.ExitMMIO:
		return log.ReasonMMIO
	case vmm.ExitHLT:
		return log.ReasonHalt
	case vmm.ExitIRQWindowOpen:
		return log.ReasonIRQWindow
	}
	return log.ReasonOther
}

// nsPerExit is the guest time each exit adds inside a chunk (the chunk's
// end adds the measured rest: clock.go). 2 us: the reference kernel makes
// ~2-5 exits per timer tick (EOI, timer reprogramming), so a busy vCPU
// reading a device clock between exits sees it move, while a chunk's
// measured time stays the larger part.
const nsPerExit = 2000

// rflagsGuestBits are the RFLAGS bits the guest's own execution sets
// (CF, PF, AF, ZF, SF, DF, OF, IF); TF and RF also reflect KVM's
// single-stepping and breakpoints, which differ between record and replay.
const rflagsGuestBits = 0xED5

// regsHash is an FNV-1a hash of the general-purpose registers, RIP and
// RFLAGS, checked at every chunk end and preemption point: a cheap,
// strong divergence check.
func regsHash(r *kvm.Regs) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range hashedRegs(r) {
		for i := 0; i < 8; i++ {
			h = (h ^ (x >> (8 * i) & 0xff)) * 1099511628211
		}
	}
	return h
}

// hashedRegs are the registers regsHash covers, in its order (regNames
// names them): the general registers, RIP and RFLAGS' guest bits.
func hashedRegs(r *kvm.Regs) [18]uint64 {
	return [18]uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP, r.RFLAGS & rflagsGuestBits}
}

// endsAtExit reports whether a chunk with this reason ended at an exit,
// not at a point replay runs to (preemption, privilege change, state
// match).
func endsAtExit(r log.Reason) bool {
	switch r {
	case log.ReasonBudget, log.ReasonPrivilege, log.ReasonStateMatch, log.ReasonStateStop:
		return false
	}
	return true
}

// DR7's L0 enable bit (Intel SDM vol. 3, 17.2.4, "Debug Control Register
// (DR7)"; type 00 = execution).
const dr7L0 = 1 << 0

// runTo runs the vCPU (in guest kernel mode, no exits expected) to the
// recorded preemption point: exactly target.KernelInsns emulated
// instructions after the chunk's last exit, at target.RIP with registers
// hashing to target.Regs. (RIP and registers alone are not enough: a
// kernel loop can repeat them while it changes memory.)
// A hardware breakpoint on RIP stops it before each execution of that
// instruction (before it is counted), and a single step moves past hits
// that are not the point (internal/pmc measured both under PVM in CPL0;
// RFLAGS.RF is ignored there, hence the step).
//
// injected says an interrupt was injected for the first entry: that entry
// is never a single step (PVM need not deliver the interrupt there as a
// plain run does); a breakpoint lets the entry deliver it first.
//
// stateMatch is a state-matching stop (det_match.go): there is no count,
// and the point is the first hit at target.RIP whose full state hashes
// to target.Regs.
func (v *vcpu) runTo(target log.Point, injected, stateMatch bool) error {
	defer v.SetGuestDebug(0, nil)
	v.runToStarted = time.Now()
	want := pointWant(target)
	// hits counts breakpoint stops at the point's RIP that were not the
	// point: fast-forward is used only once the point has proven to lie in
	// a hot loop (det_ff.go).
	hits := 0
	// last is the entry that brought the vCPU where it stands (a
	// divergence names it).
	var last runToEntry
	for {
		if v.s.m.IsStopped() {
			return errMachineStopped
		}
		d, regs, at, err := v.standing(target, stateMatch)
		if at || err != nil {
			v.trace("RUNTO-DONE vcpu %d at +%d want +%d after %d breakpoint hits, %d fast-forward runs (rate %.0f/s)", v.id, d, target.KernelInsns, hits, v.ffRuns, v.ffRate)
			return err
		}
		got := fmt.Sprintf("+%d at RIP %#x, after %v", d, regs.RIP, last)
		switch {
		case d > target.KernelInsns:
			return &DivergenceError{VCPU: v.id, What: "preemption point passed", Want: want, Got: got}
		case time.Since(v.runToStarted) > replayChunkLimit:
			return &DivergenceError{VCPU: v.id, What: "preemption point never reached", Want: want, Got: got}
		}
		if rem := target.KernelInsns - d; rem > ffWindow && hits >= ffAfterHits && v.s.opts.FastForward {
			exited, err := v.fastForward(rem)
			if err != nil {
				return err
			}
			if exited {
				return v.exitedBefore(target, stateMatch)
			}
			continue
		}
		step := (regs.RIP == target.RIP || v.debugStepAt(regs.RIP)) && !injected
		// The debugger's step of the point's last instruction lands as
		// replay does (debugLastStep).
		land := step && regs.RIP != target.RIP && d+1 == target.KernelInsns && v.s.opts.KernelCount
		if step && !land {
			hits++
		}
		last = runToEntry{set: true, step: step && !land, injected: injected, d: d, regs: *regs}
		injected = false
		var exited bool
		if land {
			exited, err = v.debugLastStep(target.RIP)
		} else {
			exited, err = v.stepTowards(target.RIP, step, regs)
		}
		if err != nil {
			return err
		}
		if exited {
			return v.exitedBefore(target, stateMatch)
		}
	}
}

// exitedBefore is the divergence of a run towards target that ended at
// an exit: "exit before the preemption point", or, where the count shows
// the run went past the point first (a plain run stops only at exits and
// breakpoint hits, and the point's breakpoint may never be hit on a
// diverged path), "preemption point passed", as a single-stepped trace
// finds it. The count is known only where KVM counts guest kernel
// instructions (PVM: opts.KernelCount).
func (v *vcpu) exitedBefore(target log.Point, stateMatch bool) error {
	want := pointWant(target)
	if !stateMatch && v.s.opts.KernelCount {
		if d, regs, err := v.position(); err == nil && d > target.KernelInsns {
			return &DivergenceError{VCPU: v.id, What: "preemption point passed", Want: want,
				Got: fmt.Sprintf("+%d at RIP %#x at exit reason %d", d, regs.RIP, v.ExitReason())}
		}
	}
	return &DivergenceError{VCPU: v.id, What: "exit before the preemption point", Want: want, Got: fmt.Sprintf("exit reason %d", v.ExitReason())}
}

// pointWant is a recorded end point as a divergence names it (replay and
// trace alike).
func pointWant(target log.Point) string {
	return fmt.Sprintf("+%d kernel instructions at RIP %#x (registers %016x)", target.KernelInsns, target.RIP, target.Regs)
}

// runToEntry is one of runTo's entries, for a divergence: a single step
// or a run to the breakpoint, from where, with an interrupt injected for
// it or not (set: there was one).
type runToEntry struct {
	set            bool
	step, injected bool
	d              uint64
	regs           kvm.Regs
}

func (e runToEntry) String() string {
	if !e.set {
		return "no entry"
	}
	kind := "a run to the breakpoint"
	if e.step {
		kind = "a single step"
	}
	if e.injected {
		kind += " delivering an injected interrupt"
	}
	return fmt.Sprintf("%s from +%d at RIP %#x (registers %016x)", kind, e.d, e.regs.RIP, regsHash(&e.regs))
}

// standing is where the vCPU stands against target: its count since the
// chunk's last exit (0 for a state-matching stop, which has none: KVM's
// own emulations are not the guest's progress), its registers, and
// whether it is at target.
func (v *vcpu) standing(target log.Point, stateMatch bool) (d uint64, regs *kvm.Regs, at bool, err error) {
	if d, regs, err = v.position(); err != nil {
		return 0, nil, false, err
	}
	if stateMatch {
		d = 0
	}
	at, err = v.atPoint(d, regs, target, stateMatch)
	return d, regs, at, err
}

// atPoint reports whether the vCPU, d counted instructions into its
// segment with registers regs, stands at target.
func (v *vcpu) atPoint(d uint64, regs *kvm.Regs, target log.Point, stateMatch bool) (bool, error) {
	if d != target.KernelInsns || regs.RIP != target.RIP {
		return false, nil
	}
	if !stateMatch {
		return regsHash(regs) == target.Regs, nil
	}
	h, err := v.matchHash(regs)
	return h == target.Regs, err
}

// position is where the vCPU stands in its chunk: kernel instructions
// since the chunk's last exit, and the registers.
func (v *vcpu) position() (uint64, *kvm.Regs, error) {
	n, err := v.kernelInsns()
	if err != nil {
		return 0, nil, err
	}
	regs, err := v.Regs()
	if err != nil {
		return 0, nil, err
	}
	v.trace("runTo vcpu %d: at +%d rip %#x exit %d", v.id, n-v.last, regs.RIP, v.ExitReason())
	return n - v.last, regs, nil
}

// stepTowards runs the vCPU to the next execution of rip (a hardware
// breakpoint), or one instruction when step; pre are the registers it
// stands with. A step is usually at rip, but the debugger steps runTo's
// vCPU anywhere (debug_tail.go, debugStepAt), so the step's fix-up looks
// at the instruction at pre.RIP: given rip, every debugger step towards a
// point at a PUSHF cleared bit 8 of the value on top of the stack,
// whatever the stepped instruction was (found 2026-12-06: TestGDB
// diverged in about 1 run in 10, at points at PUSHF in do_idle and
// _raw_spin_lock_irqsave). It reports a real exit, which runTo does not
// expect.
func (v *vcpu) stepTowards(rip uint64, step bool, pre *kvm.Regs) (exited bool, err error) {
	if !step && !v.s.opts.KernelCount {
		return v.runToPageBreak(rip) // det_match.go
	}
	control, dr := uint32(vmm.GuestDebugEnable|vmm.GuestDebugUseHWBP), v.tailBreakpoints(rip)
	if step {
		control, dr = vmm.GuestDebugEnable|vmm.GuestDebugSingleStep, nil
	}
	_, exited, err = v.enterDebug(control, dr)
	if exited || err != nil {
		return exited, err
	}
	if step {
		if _, err := v.fixStepLeaks(pre); err != nil {
			return false, err
		}
	}
	return false, v.debugTail(step)
}

// debugLastStep is the debugger's single step (gdb's stepi, a step over
// its breakpoint, a watchpoint's step) of the last instruction before a
// preemption point: it runs to the point's breakpoint instead, as replay
// does, and then acts as after the step (debugTail). Measured under PVM
// (a fresh TestGDB, 1 run in 4): a step of SWAPGS on the way back to user
// mode ran the JMP after it too, and the replay under a watchpoint
// diverged with "preemption point passed" by one instruction; a step of
// an LFENCE or of a kernel IRETQ does the same (trace_step.go,
// stiShadowed). DR0 holds the point's RIP alone: gdb's breakpoint at the
// instruction being stepped over would stop the entry where it stands
// (PVM ignores RFLAGS.RF, runTo). After a kick runTo looks again where
// the vCPU stands.
func (v *vcpu) debugLastStep(rip uint64) (exited bool, err error) {
	kicked, exited, err := v.enterDebug(vmm.GuestDebugEnable|vmm.GuestDebugUseHWBP, &[8]uint64{0: rip, 7: dr7L0})
	if kicked || exited || err != nil {
		return exited, err
	}
	return false, v.debugTail(true)
}

// enterDebug sets the vCPU's guest debugging (control, and the debug
// registers when dr is not nil) and runs it once, timed: a vCPU that
// diverged may never reach the breakpoint nor exit, and the timer brings
// it back so runTo's time limit applies. kicked reports an EINTR, exited
// a real exit (not a debug exit).
func (v *vcpu) enterDebug(control uint32, dr *[8]uint64) (kicked, exited bool, err error) {
	if err := v.SetGuestDebug(control, dr); err != nil {
		return false, false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	err, terr := v.enterTimed(runToCheckEvery)
	switch {
	case terr != nil:
		return false, false, terr
	case errors.Is(err, vmm.ErrInterrupted):
		return true, false, nil
	case err != nil:
		return false, false, err
	}
	return false, v.ExitReason() != vmm.ExitDebug, nil
}

// enterTimed runs the vCPU once with its fast-forward timer armed for d,
// so that an entry that neither exits nor stops comes back (EINTR)
// within d. It returns KVM_RUN's outcome (nil for an exit,
// vmm.ErrInterrupted, or an error) and, apart, the timer's error.
func (v *vcpu) enterTimed(d time.Duration) (runErr, timerErr error) {
	if err := v.ffTimer.Arm(d); err != nil {
		return nil, err
	}
	runErr = v.Enter()
	if err := v.ffTimer.Arm(0); err != nil {
		return runErr, err
	}
	v.ffTimer.Consume()
	return runErr, nil
}

// errMachineStopped ends a chunk whose machine was stopped from outside
// (by the stall watchdog, a stop signal or an error elsewhere) before the
// chunk reached an end point.
var errMachineStopped = errors.New("the machine stopped before the chunk's end point")

var errNoProgress = errors.New("every vCPU is halted and no timer is armed: the guest can never run again")

// traceChunkStart logs a chunk's start when tracing.
func (v *vcpu) traceChunkStart(replay bool) {
	if !v.s.tracing() {
		return
	}
	n, _ := v.kernelInsns()
	r, _ := v.Regs()
	v.s.log.Debug(fmt.Sprintf("chunk start vcpu %d replay=%v at %d rip %#x", v.id, replay, n, r.RIP))
}

// traceInject logs an injection decision when tracing.
func (v *vcpu) traceInject(replay bool, exits uint32, injected bool) {
	if !v.s.tracing() {
		return
	}
	n, _ := v.kernelInsns()
	v.s.log.Debug(fmt.Sprintf("inject vcpu %d replay=%v at %d exits %d: %v", v.id, replay, n, exits, injected))
}

// trace logs a formatted debug line when tracing (formatted only then).
func (v *vcpu) trace(format string, args ...any) {
	if v.s.tracing() {
		v.s.log.Debug(fmt.Sprintf(format, args...))
	}
}

// atRepString reports whether the vCPU is at a REP-prefixed string
// instruction (MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS), possibly part-way
// through it. Such a point is not exact: the emulator runs the iterations
// in batches, one insn_emulation count each, and a single step in replay
// runs one iteration, so the count at a given RCX differs between a kicked
// run and a stepped one (measured: a parallel diskrw recording preempted
// inside copy_user_enhanced_fast_string's REP MOVSB replayed to +1641
// instructions where +1640 was recorded). The recorders do not preempt
// there; the watchdog tries again later. An unreadable instruction counts
// as one.
func (v *vcpu) atRepString(rip uint64) bool {
	b := v.InstructionBytes(rip)
	return len(b) == 0 || isRepString(b)
}

// isRepString reports whether instruction bytes b start with a REP/REPNE
// prefixed string instruction (other prefixes allowed before the opcode).
func isRepString(b []byte) bool {
	rep := false
	for _, c := range b {
		switch {
		case c == 0xF2 || c == 0xF3:
			rep = true
		case c == 0x26 || c == 0x2E || c == 0x36 || c == 0x3E || c == 0x64 || c == 0x65 ||
			c == 0x66 || c == 0x67 || c == 0xF0 || (c >= 0x40 && c <= 0x4F):
			// segment, size, lock and REX prefixes
		default:
			return rep && (c >= 0xA4 && c <= 0xA7 || c >= 0xAA && c <= 0xAF || c >= 0x6C && c <= 0x6F)
		}
	}
	return false
}

// asDivergence is the *DivergenceError in err's chain, or nil.
func asDivergence(err error) *DivergenceError {
	var de *DivergenceError
	if errors.As(err, &de) {
		return de
	}
	return nil
}
