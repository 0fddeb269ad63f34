package vmm

// The serialized recorder and the replayer (DESIGN.md, "One log, one
// replayer, two recorders"). One vCPU runs at a time; a chunk is one turn
// of one vCPU. Everything a chunk does is a function of the machine state
// at its start, because:
//
//   - guest time is virtual (det_clock.go): it advances by a fixed amount
//     per exit and per emulated kernel instruction, never with the host's
//     clock, so timers fire at the same exits in both runs;
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
	"os"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/pmc"
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
	// userSpinLimit bounds how long a chunk may stay in guest user mode
	// without an exit before the recording fails: user code cannot be
	// preempted exactly without a PMU (see the file comment).
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
}

// detVCPU is a vCPU's deterministic-mode state.
type detVCPU struct {
	// stats reads insn_emulation.
	stats *pmc.Stats
	// base is insn_emulation when the recording started.
	base uint64
	// last is the count at the last clock update.
	last uint64
	// turn receives the chunk to run (replay: the record; record: nil).
	turn chan *log.Chunk
	// ffTimer interrupts replay's fast-forward runs (det_ff.go); created
	// on the vCPU's thread at first use.
	ffTimer *threadTimer
	// ffRate is the fastest emulation rate seen, instructions per second.
	ffRate float64
	// ffRuns counts fast-forward runs (tracing).
	ffRuns int
}

// kernelInsns returns the vCPU's emulated kernel instructions since the
// recording started.
func (v *vcpu) kernelInsns() (uint64, error) {
	n, err := v.det.stats.Read("insn_emulation")
	return n - v.det.base, err
}

// openDet prepares every vCPU for deterministic mode.
func (m *Machine) openDet() error {
	for _, v := range m.vcpus {
		fd, err := getStatsFD(v.fd)
		if err != nil {
			return fmt.Errorf("vcpu %d KVM_GET_STATS_FD: %w (record/replay needs KVM binary statistics)", v.id, err)
		}
		s, err := pmc.OpenStats(fd)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if !s.Has("insn_emulation") {
			s.Close()
			return fmt.Errorf("vcpu %d: KVM has no insn_emulation statistic; record/replay needs it (see samsara probe)", v.id)
		}
		base, err := s.Read("insn_emulation")
		if err != nil {
			return err
		}
		v.det = &detVCPU{stats: s, base: base, turn: make(chan *log.Chunk)}
	}
	return nil
}

// runnableLocked reports whether v can run a chunk now, making a halted
// vCPU with a pending interrupt running again.
// Preconditions: m.mu must be held.
func (v *vcpu) runnableLocked() bool {
	switch v.state {
	case stateRunning:
		return true
	case stateHalted:
		if _, ok := v.m.bus.LAPIC(v.id).PendingVector(); ok {
			v.state = stateRunning
			return true
		}
	case stateWaitSIPI:
		return v.sipiPending
	case stateDead:
	default:
		panic(fmt.Sprintf("vcpu %d: impossible state %d", v.id, v.state))
	}
	return false
}

// advanceIdleLocked jumps virtual time to the earliest timer deadline
// when no vCPU can run, and fires it. It returns false when nothing is
// armed: the guest can never wake up.
// Preconditions: m.mu must be held.
func (m *Machine) advanceIdleLocked() bool {
	next, ok := m.nextDeadlineLocked()
	if !ok {
		return false
	}
	if next > m.clock.vt {
		m.clock.vt = next
	}
	m.pollTimersLocked()
	return true
}

// detLoop is a vCPU's goroutine in deterministic mode: it runs one chunk
// per turn and reports the result.
// It sends on ready once set up, before it waits for turns.
func (v *vcpu) detLoop(done chan<- chunkResult, ready chan<- struct{}) {
	lockThread(v)
	// The fast-forward timer changes the thread's signal mask and the
	// vCPU's KVM_RUN mask: done once, before the first chunk, so no chunk
	// runs under a different setting than the next.
	// (Measured: creating it at the first preemption point instead, between
	// the chunk's interrupt injection and its KVM_RUN, made 2 of 5 replays
	// of a dedup recording diverge there; created here, 0 of 6.)
	timer, timerErr := newThreadTimer(v.fd, int(v.tid.Load()))
	if timerErr == nil {
		v.det.ffTimer, v.det.ffRate = timer, ffSeedRate
	}
	ready <- struct{}{}
	for {
		select {
		case <-v.m.stopped:
			return
		case want := <-v.det.turn:
			if timerErr != nil {
				done <- chunkResult{err: timerErr}
				continue
			}
			rec, err := v.runChunk(want)
			done <- chunkResult{rec: rec, err: err}
		}
	}
}

// beginChunk is the start of every chunk in record and replay alike: the
// pending I/O of the last exit is completed (flushPendingIO), and an AP
// whose startup IPI arrived is put at its start vector.
func (v *vcpu) beginChunk() error {
	if err := v.flushPendingIO(); err != nil {
		return err
	}
	v.m.mu.Lock()
	startSIPI := v.state == stateWaitSIPI && v.sipiPending
	if startSIPI {
		v.sipiPending, v.state = false, stateRunning
	}
	v.m.mu.Unlock()
	if startSIPI {
		return v.startAt(v.sipiVector)
	}
	return nil
}

// runChunk runs one chunk. In replay, want is the recorded chunk to
// reproduce; in record, want is nil.
func (v *vcpu) runChunk(want *log.Chunk) (log.Chunk, error) {
	m := v.m
	rec := log.Chunk{VCPU: uint32(v.id)}
	if err := v.beginChunk(); err != nil {
		return rec, err
	}
	var err error
	if v.det.last, err = v.kernelInsns(); err != nil {
		return rec, err
	}
	inject := true // first entry of the chunk, or right after a real exit
	// injectedSinceExit: an interrupt was injected since the last exit (or
	// the chunk start); the recorder does not preempt then.
	injectedSinceExit := false
	started := time.Now()
	if v.m.tracing() {
		n, _ := v.kernelInsns()
		r, _ := kvm.GetRegs(uintptr(v.fd))
		v.m.log.Debug(fmt.Sprintf("chunk start vcpu %d replay=%v at %d rip %#x state %v", v.id, want != nil, n, r.RIP, v.state))
	}
	if want == nil {
		stopWatchdog := v.startWatchdog(started)
		defer stopWatchdog()
	} else if signalStorm > 0 {
		// Diagnostics: interrupt KVM_RUN often during replay, to measure
		// whether EINTRs are visible to the guest (they must not be).
		t := time.NewTicker(signalStorm)
		quit := make(chan struct{})
		go func() {
			for {
				select {
				case <-t.C:
					if tid := v.tid.Load(); tid != 0 {
						unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
					}
				case <-quit:
					return
				}
			}
		}()
		defer func() { t.Stop(); close(quit) }()
	}
	for {
		if want != nil && rec.Exits == want.Exits {
			if want.Reason == log.ReasonBudget || want.Reason == log.ReasonPrivilege {
				// The recorder preempted only after the guest had taken any
				// interrupt injected at this entry, so inject it the same way
				// and let runTo's first entry deliver it.
				if inject {
					m.mu.Lock()
					injected, err := v.injectLocked()
					m.mu.Unlock()
					v.traceInject(want != nil, rec.Exits, injected)
					if err != nil {
						return rec, err
					}
				}
				if err := v.runTo(want.End); err != nil {
					return rec, err
				}
			}
			return v.finishChunk(rec, want.Reason)
		}
		if want != nil && time.Since(started) > replayChunkLimit {
			return rec, fmt.Errorf("replay of the chunk made no progress for %v", replayChunkLimit)
		}
		// The recorder preempts only here: after a kick (EINTR), and never
		// after an interrupt was injected since the last exit. Replay finds
		// the point with breakpoints and single steps, and PVM need not
		// deliver a queued interrupt at the same instruction while
		// single-stepping as it does in a plain run; an interrupt handler
		// exits soon anyway (its EOI write), which ends the segment.
		if elapsed := time.Since(started); want == nil && !inject && !injectedSinceExit && elapsed >= spinCheckAfter {
			try := elapsed >= preemptAfter
			if !try && spinChecks {
				if try, err = v.inSpin(); err != nil {
					return rec, err
				}
			}
			if try {
				preempted, err := v.tryPreempt(&rec, started)
				if preempted || err != nil {
					return rec, err
				}
			}
		}
		setImmediateExit(v.run, false)
		if inject {
			m.mu.Lock()
			injected, err := v.injectLocked()
			m.mu.Unlock()
			if err != nil {
				return rec, err
			}
			injectedSinceExit = injectedSinceExit || injected
			v.traceInject(want != nil, rec.Exits, injected)
		}
		err := runVCPU(v.fd)
		if err == errInterrupted {
			inject = false
			if m.isStopped() {
				return v.finishChunk(rec, log.ReasonExit)
			}
			continue
		}
		if err != nil {
			return rec, err
		}
		inject = true
		injectedSinceExit = false
		rec.Exits++
		v.tickClock()
		if v.det.last, err = v.kernelInsns(); err != nil {
			return rec, err
		}
		reason := exitReason(v.run.ExitReason)
		if err := v.handleExit(); err != nil {
			return rec, err
		}
		if err := m.cfg.NDE.Err(); err != nil {
			return rec, err
		}
		m.mu.Lock()
		m.pollTimersLocked()
		state := v.state
		m.mu.Unlock()
		if want != nil {
			continue
		}
		switch {
		case m.isStopped():
			return v.finishChunk(rec, log.ReasonExit)
		case state != stateRunning:
			return v.finishChunk(rec, log.ReasonHalt)
		case rec.Exits >= chunkExitBudget:
			return v.finishChunk(rec, reason)
		}
	}
}

// startWatchdog kicks the vCPU out of KVM_RUN when its chunk should be
// preempted (preemptionNeeded), checking every preemptAfter, so a chunk
// that never exits comes back to runChunk (a kick can be lost when it
// lands between two KVM_RUNs; the next tick repeats it). It kicks only
// when needed: each kick is an EINTR and each preemption a point replay
// must find by breakpoint. (While record/replay still requested interrupt
// windows, kicks changed where PVM opened them: replaying with a signal
// every millisecond, SAMSARA_DEBUG_SIGNAL_STORM=1ms, made 3 of 5 replays
// diverge; without window requests 16 of 16 matched.)
func (v *vcpu) startWatchdog(started time.Time) (stop func()) {
	period := preemptAfter
	if spinChecks && len(v.m.spins) > 0 {
		period = spinCheckAfter // det_spin.go
	}
	t := time.NewTicker(period)
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				if v.m.preemptionNeeded(v, started) {
					v.kick()
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { t.Stop(); close(quit) }
}

// preemptionNeeded says whether a chunk running without exits should be
// cut: when another vCPU is waiting to run (the running one may be
// spinning on it), or after timeWaitAfter alone (a kernel waiting for time
// to pass, which only preemptions advance; see nsPerPreemption). Fewer
// preemptions mean fewer points replay must find by breakpoint.
func (m *Machine) preemptionNeeded(cur *vcpu, started time.Time) bool {
	if time.Since(started) >= timeWaitAfter {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.vcpus {
		if v != cur && v.runnableLocked() {
			return true
		}
	}
	return false
}

// timeWaitAfter: a chunk alone on the machine is preempted after this long
// without an exit, so that a guest kernel busy-waiting for a timer sees
// virtual time move (1 ms of guest time per preemption). Long, because a
// kick can perturb the guest (startWatchdog).
const timeWaitAfter = time.Second

// tryPreempt ends the chunk at the current point if the vCPU is in guest
// kernel mode (exactly countable); in user mode it lets the vCPU go on,
// up to userSpinLimit.
func (v *vcpu) tryPreempt(rec *log.Chunk, started time.Time) (bool, error) {
	if !v.m.preemptionNeeded(v, started) {
		return false, nil
	}
	ok, user, err := v.preemptablePoint()
	if err != nil {
		return false, err
	}
	if user && time.Since(started) > userSpinLimit {
		return false, fmt.Errorf("vcpu %d ran guest user code for %v without an exit; it cannot be preempted at an exact point on a host without a PMU (see README, platform notes)", v.id, userSpinLimit)
	}
	if !ok {
		return false, nil
	}
	*rec, err = v.finishChunk(*rec, log.ReasonBudget)
	return true, err
}

// preemptablePoint reports whether the vCPU stands where a chunk may end
// by preemption, a point replay can find again (both recorders ask it):
// guest kernel code (user reports guest user mode instead), not a REP
// string instruction (atRepString), and real progress since the chunk's
// last exit or start: right after an exit the only kernel "progress" may
// be KVM completing the exit's I/O instruction, and replay's breakpoint
// cannot land between that completion and the next instruction.
func (v *vcpu) preemptablePoint() (ok, user bool, err error) {
	s, err := kvm.GetSregs(uintptr(v.fd))
	if err != nil {
		return false, false, err
	}
	if s.CS.Selector&3 != 0 {
		return false, true, nil
	}
	if n, err := v.kernelInsns(); err != nil || n < v.det.last+2 {
		return false, false, err
	}
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return false, false, err
	}
	return !v.atRepString(regs.RIP), false, nil
}

// finishChunk fills the chunk's end point: the registers, and the kernel
// instructions since the chunk's last exit (or its start).
func (v *vcpu) finishChunk(rec log.Chunk, reason log.Reason) (log.Chunk, error) {
	rec.Reason = reason
	n, err := v.kernelInsns()
	if err != nil {
		return rec, err
	}
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return rec, err
	}
	rec.End = log.Point{KernelInsns: n - v.det.last, RIP: regs.RIP, RCX: regs.RCX, Regs: regsHash(regs)}
	if v.m.tracing() {
		v.m.log.Debug(fmt.Sprintf("CHUNK vcpu %d reason %v exits %d rip %#x vt %d regs %+v", v.id, reason, rec.Exits, regs.RIP, v.m.clock.vt, *regs))
	}
	return rec, nil
}

// exitReason maps a KVM exit to the chunk reason it would give.
func exitReason(r uint32) log.Reason {
	switch r {
	case exitIO:
		return log.ReasonIO
	case exitMMIO:
		return log.ReasonMMIO
	case exitHLT:
		return log.ReasonHalt
	case exitIRQWindowOpen:
		return log.ReasonIRQWindow
	}
	return log.ReasonOther
}

// Virtual time: every exit advances guest time by nsPerExit, a preemption
// by nsPerPreemption, and an idle machine jumps to its next timer
// deadline. Guest user code is not counted at all without a PMU, so time
// cannot follow instructions; exits and preemptions are logged points.
//
// 2 us per exit: the reference kernel makes ~2-5 exits per timer tick
// (EOI, timer reprogramming), so at HZ=100 a busy vCPU sees a tick every
// few thousand exits rather than every few exits, which keeps the
// emulated tick path (66% of a wall-clock-timed boot, PLATFORM.md) cheap.
const nsPerExit = 2000

// nsPerPreemption advances virtual time when a chunk is preempted in guest
// kernel code. A kernel busy-waiting for time to pass (the LAPIC timer
// calibration at boot waits for 10 PIT ticks) makes no exits, so exits
// alone would never move its clock; preemptions are in the log, so both
// runs advance time at the same points. 1 ms per 20 ms watchdog period
// keeps such waits to a few seconds of wall time.
const nsPerPreemption = 1000000

// chunkEnded applies what a finished chunk does to machine time. A chunk
// ended at a privilege change (det_bounds.go) stands for a kernel entry or
// exit, not for a stretch of kernel time: it advances time like an exit
// (advancing it like a preemption made the idle vCPUs' timer ticks, and
// their writes to timekeeping pages that every page fault reads, 500 times
// as frequent).
func (m *Machine) chunkEnded(rec *log.Chunk) {
	var dt int64
	switch rec.Reason {
	case log.ReasonBudget:
		dt = nsPerPreemption
	case log.ReasonPrivilege:
		dt = nsPerExit
	default:
		return
	}
	m.mu.Lock()
	m.clock.vt += dt
	m.pollTimersLocked()
	m.mu.Unlock()
}

// tickClock advances virtual time for one exit.
func (v *vcpu) tickClock() {
	v.m.mu.Lock()
	v.m.clock.vt += nsPerExit
	v.m.mu.Unlock()
}

// rflagsGuestBits are the RFLAGS bits the guest's own execution sets
// (CF, PF, AF, ZF, SF, DF, OF, IF); TF and RF also reflect KVM's
// single-stepping and breakpoints, which differ between record and replay.
const rflagsGuestBits = 0xED5

// regsHash is an FNV-1a hash of the general-purpose registers, RIP and
// RFLAGS, checked at every chunk end and preemption point: a cheap,
// strong divergence check.
func regsHash(r *kvm.Regs) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range []uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP, r.RFLAGS & rflagsGuestBits} {
		for i := 0; i < 8; i++ {
			h = (h ^ (x >> (8 * i) & 0xff)) * 1099511628211
		}
	}
	return h
}

// KVM_GUESTDBG_USE_HW_BP and DR7's L0 enable bit.
const (
	guestDbgUseHWBP = 0x00020000
	dr7L0           = 1 << 0
)

// runTo runs the vCPU (in guest kernel mode, no exits expected) to the
// recorded preemption point: exactly target.KernelInsns emulated
// instructions after the chunk's last exit, at target.RIP with registers
// hashing to target.Regs. (RIP and registers alone are not enough: a
// kernel loop can repeat them while it changes memory.)
// A hardware breakpoint on RIP stops it before each execution of that
// instruction (before it is counted), and a single step moves past hits
// that are not the point (internal/pmc measured both under PVM in CPL0;
// RFLAGS.RF is ignored there, hence the step).
func (v *vcpu) runTo(target log.Point) error {
	defer setGuestDebug(v.fd, 0, nil)
	started := time.Now()
	// hits counts breakpoint stops at the point's RIP that were not the
	// point: fast-forward is used only once the point has proven to lie in
	// a hot loop (det_ff.go).
	hits := 0
	for {
		n, err := v.kernelInsns()
		if err != nil {
			return err
		}
		regs, err := kvm.GetRegs(uintptr(v.fd))
		if err != nil {
			return err
		}
		d := n - v.det.last
		if v.m.tracing() {
			v.m.log.Debug(fmt.Sprintf("runTo vcpu %d: at +%d rip %#x exit %d, want +%d rip %#x", v.id, d, regs.RIP, v.run.ExitReason, target.KernelInsns, target.RIP))
		}
		if d == target.KernelInsns && regs.RIP == target.RIP && regsHash(regs) == target.Regs {
			if v.m.tracing() {
				v.m.log.Debug(fmt.Sprintf("RUNTO-DONE vcpu %d at +%d want +%d after %d fast-forward runs (rate %.0f/s)", v.id, d, target.KernelInsns, v.det.ffRuns, v.det.ffRate))
			}
			return nil
		}
		want := fmt.Sprintf("+%d kernel instructions at RIP %#x", target.KernelInsns, target.RIP)
		if d > target.KernelInsns {
			return &DivergenceError{VCPU: v.id, What: "preemption point passed", Want: want, Got: fmt.Sprintf("+%d at RIP %#x", d, regs.RIP)}
		}
		if time.Since(started) > replayChunkLimit {
			return &DivergenceError{VCPU: v.id, What: "preemption point never reached", Want: want, Got: fmt.Sprintf("+%d at RIP %#x", d, regs.RIP)}
		}
		if rem := target.KernelInsns - d; rem > ffWindow && hits >= ffAfterHits && !noFastForward {
			exited, err := v.fastForward(rem)
			if err != nil {
				return err
			}
			if exited {
				return &DivergenceError{VCPU: v.id, What: "exit before the preemption point", Want: want, Got: fmt.Sprintf("exit reason %d", v.run.ExitReason)}
			}
			continue
		}
		if regs.RIP == target.RIP {
			hits++
			err = setGuestDebug(v.fd, guestDbgEnable|guestDbgSingleStep, nil)
		} else {
			err = setGuestDebug(v.fd, guestDbgEnable|guestDbgUseHWBP, &[8]uint64{0: target.RIP, 7: dr7L0})
		}
		if err != nil {
			return fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
		}
		setImmediateExit(v.run, false)
		// A vCPU that diverged may never reach the breakpoint nor exit:
		// the timer brings it back so the time limit above applies.
		if err := v.det.ffTimer.arm(runToCheckEvery); err != nil {
			return err
		}
		err = runVCPU(v.fd)
		if aerr := v.det.ffTimer.arm(0); aerr != nil {
			return aerr
		}
		v.det.ffTimer.consume()
		if err != nil && err != errInterrupted {
			return err
		}
		if err == nil && v.run.ExitReason != exitDebug {
			return &DivergenceError{VCPU: v.id, What: "exit before the preemption point", Want: want, Got: fmt.Sprintf("exit reason %d", v.run.ExitReason)}
		}
	}
}

// lockThread pins the calling goroutine to its OS thread for a vCPU and
// records the thread for kicks.
func lockThread(v *vcpu) {
	lockOSThread()
	v.tid.Store(int32(unix.Gettid()))
}

var errNoProgress = errors.New("every vCPU is halted and no timer is armed: the guest can never run again")

// asDivergence is errors.As for *DivergenceError.
func asDivergence(err error, target **DivergenceError) bool { return errors.As(err, target) }

// traceInject logs an injection decision when tracing.
func (v *vcpu) traceInject(replay bool, exits uint32, injected bool) {
	if !v.m.tracing() {
		return
	}
	n, _ := v.kernelInsns()
	v.m.log.Debug(fmt.Sprintf("inject vcpu %d replay=%v at %d exits %d: %v", v.id, replay, n, exits, injected))
}

// tracing reports whether chunk and preemption tracing is on (samsara -v:
// the logger at debug level); the traces are formatted only then.
func (m *Machine) tracing() bool { return m.log.Core().Enabled(zapcore.DebugLevel) }

// signalStorm (SAMSARA_DEBUG_SIGNAL_STORM=1ms) makes replay interrupt the
// running vCPU that often; see runChunk.
var signalStorm, _ = time.ParseDuration(os.Getenv("SAMSARA_DEBUG_SIGNAL_STORM"))

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
	b := v.instructionBytes(rip, nil)
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
