package session

// Debugger: a gdbstub.Target over replays of one recording.
//
// Forward execution drives one replay (debug_hook.go). Going backwards
// starts a fresh replay (Debugger.open builds it) and runs it forwards to
// the chosen point, which determinism makes the same point:
//
//   - reverse-continue runs a first replay to now with the breakpoints
//     armed, recording every hit in commit order across all vCPUs, then a
//     second one to the last hit (at its position, reached as replay
//     reaches a preemption point: det.go, runTo);
//   - reverse-stepi goes back to the position the selected vCPU stood at
//     before its last forward step (the positions a forward step came
//     from are remembered), or else single-steps a fresh replay from the
//     exit before now to the instruction before now;
//   - with no earlier hit the replay stops before its first chunk and gdb
//     is told the history begins there ("No more reverse-execution
//     history").
//
// A fresh replay starts from the nearest machine checkpoint the debugger
// took before the point (debug_ckpt.go), else from the recording's start.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// OpenFunc builds a fresh machine and replay session for the recording:
// at its start when ckpt is "", else from the checkpoint file ckpt that
// the debugger took during an earlier replay, with records the rest of
// the recording from there (the caller closes both).
type OpenFunc func(ckpt string, records []log.Record) (*vmm.Machine, *Session, error)

// debugWaitLimit bounds one wait for a replay to reach its next stop: a
// whole replay of the longest recordings of the test corpus takes a few
// minutes on these hosts; an hour means something hangs.
const debugWaitLimit = time.Hour

// debugAbandonLimit bounds the wait for an abandoned replay's goroutines
// to end (they only have to see the machine stopped).
const debugAbandonLimit = 30 * time.Second

// interruptKickEvery repeats the kick of an interrupted vCPU: a kick that
// lands between two KVM_RUNs is lost (det.go, startChunkTimers).
const interruptKickEvery = 50 * time.Millisecond

// maxHWBreakpoints is the number of debug address registers, DR0-DR3
// (Intel SDM vol. 3, 17.2.1).
const maxHWBreakpoints = 4

// userSpaceEnd: addresses below it are guest user space (x86-64 canonical
// lower half, 47-bit virtual addresses).
const userSpaceEnd = 0x0000800000000000

// Debugger serves one recording to gdb (it implements gdbstub.Target).
type Debugger struct {
	open    OpenFunc
	records []log.Record
	chunks  int
	log     *zap.Logger
	// run is the replay gdb is looking at.
	run *debugRun
	// bps are gdb's breakpoints and watchpoints, in debug-register order.
	bps []hwBreak
	// pos and stop are where run stands and why.
	pos  Position
	stop gdbstub.Stop
	// prev maps a position reached by a forward step to the position the
	// step started from (reverse-stepi). The key is the whole Position,
	// RIP and register hash included: without an instruction counter
	// (hardware virtualization without a PMU) Insns stays at KVM's own
	// emulation count, the same for every instruction between two exits,
	// and a key without them made every stepi of a stretch one point
	// (measured in the emulated SVM host: ten reverse-stepi after ten
	// stepi all went to the ninth step's PC).
	prev map[Position]Position
	// visited are the positions this debugger stopped at (monitor seek).
	visited []Position
	// checkpoints are the positions `monitor checkpoint` named.
	checkpoints []Position
	// recStart[i] is the index in records where chunk i's records (its
	// time readings, then the chunk) begin.
	recStart []int
	// ckpts are the checkpoints taken so far (debug_ckpt.go).
	ckpts ckptSet
	// mu guards run for Interrupt, called while a resume waits.
	mu sync.Mutex
	// interrupted is set by Interrupt until the run stops.
	interrupted bool
	// pageOf is every replay's page-trap translations (debug_page.go).
	pageOf *bpPages
}

// debugRun is one replay under the debugger.
type debugRun struct {
	m    *vmm.Machine
	s    *Session
	h    *debugHook
	done chan error
	// ended is the replay's result once it returned (nil before).
	ended *error
}

// NewDebugger prepares a debugger over records; the first replay starts,
// stopped before its first chunk, at once. ckptEvery spaces the
// checkpoints it takes while replaying (0: every 2 s of replay).
func NewDebugger(open OpenFunc, records []log.Record, ckptEvery time.Duration, logger *zap.Logger) (*Debugger, error) {
	d := &Debugger{open: open, records: records, log: logger.Named("debugger"), prev: map[Position]Position{}, pageOf: newBPPages()}
	d.ckpts.every = ckptEvery
	if ckptEvery <= 0 {
		d.ckpts.every = defaultCkptEvery
	}
	d.recStart = append(d.recStart, 0)
	for i, r := range records {
		if _, ok := r.(*log.Chunk); ok {
			d.chunks++
			d.recStart = append(d.recStart, i+1)
		}
	}
	if d.chunks == 0 {
		return nil, fmt.Errorf("the recording has no chunks: nothing to debug")
	}
	if err := d.restart(debugCmd{mode: modeGoto, target: Position{Exits: -1}}); err != nil {
		return nil, err
	}
	return d, nil
}

// Close ends the current replay.
func (d *Debugger) Close() {
	d.abandon(d.run)
	d.mu.Lock()
	d.run = nil
	d.mu.Unlock()
	d.ckpts.close()
}

// start builds a fresh replay that carries out first, from checkpoint
// from (nil: the recording's start).
func (d *Debugger) start(first debugCmd, from *debugCkpt) (*debugRun, error) {
	path, base := "", 0
	if from != nil {
		path, base = from.path, from.chunk
	}
	records := d.records[d.recStart[base]:]
	m, s, err := d.open(path, records)
	if err != nil {
		return nil, fmt.Errorf("debugger: build the replay: %w", err)
	}
	r := &debugRun{m: m, s: s, h: newDebugHook(s, first, d.pageOf), done: make(chan error, 1)}
	r.h.base = base
	r.h.beforeChunk = func(i int) error { return d.ckpts.maybeTake(m, i) }
	s.dbg = r.h
	go func() {
		_, err := s.replay(records)
		r.done <- err
	}()
	return r, nil
}

// abandon stops a replay and releases it.
func (d *Debugger) abandon(r *debugRun) {
	if r == nil {
		return
	}
	r.m.Stop(errDebugAbandoned)
	if r.ended == nil {
		select {
		case <-r.done:
		case <-time.After(debugAbandonLimit):
			d.log.Warn("an abandoned replay did not end", zap.Duration("waited", debugAbandonLimit))
			return
		}
	}
	r.s.Close()
	r.m.Close()
}

// restart replaces the current replay with a fresh one carrying out cmd,
// and waits for its stop.
func (d *Debugger) restart(cmd debugCmd) error {
	_, err := d.restartHits(cmd, d.ckpts.before(cmd.target))
	return err
}

// restartHits is restart from checkpoint from (nil: the start),
// returning the stop with its hits (modeCollect).
func (d *Debugger) restartHits(cmd debugCmd, from *debugCkpt) (debugHit, error) {
	d.abandon(d.run)
	d.mu.Lock()
	d.run = nil
	d.mu.Unlock()
	r, err := d.start(cmd, from)
	if err != nil {
		return debugHit{}, err
	}
	d.mu.Lock()
	d.run = r
	d.mu.Unlock()
	hit, err := d.wait(r)
	if err != nil {
		return debugHit{}, err
	}
	d.at(hit)
	return hit, nil
}

// wait waits for r's next stop or its end (reported as the end of the
// history).
func (d *Debugger) wait(r *debugRun) (debugHit, error) {
	if r.ended != nil {
		return debugHit{pos: d.pos, stop: gdbstub.Stop{Reason: gdbstub.StopHistoryEnd, Thread: d.pos.VCPU}}, nil
	}
	limit := time.NewTimer(debugWaitLimit)
	defer limit.Stop()
	kick := time.NewTicker(interruptKickEvery)
	defer kick.Stop()
	for {
		select {
		case hit := <-r.h.stops:
			d.mu.Lock()
			d.interrupted = false
			d.mu.Unlock()
			return hit, nil
		case err := <-r.done:
			r.ended = &err
			hit, err := d.ended(err)
			// The replay's goroutines have ended: its hits can be read.
			hit.hits = r.h.hits
			return hit, err
		case <-kick.C:
			d.kickIfInterrupted(r)
		case <-limit.C:
			return debugHit{}, fmt.Errorf("debugger: the replay did not stop within %v", debugWaitLimit)
		}
	}
}

// ended reports the end of a replay: the end of the history if it
// matched the recording, else its error.
func (d *Debugger) ended(err error) (debugHit, error) {
	var pe *PrefixError
	switch {
	case err == nil:
		d.log.Info("replay reached the end of the recording and matched it")
	case errors.As(err, &pe):
		d.log.Info("replay reached the end of a recording without an end record", zap.Error(err))
	default:
		return debugHit{}, fmt.Errorf("debugger: replay: %w", err)
	}
	pos := Position{Chunk: d.chunks, VCPU: d.pos.VCPU, Exits: -1}
	return debugHit{pos: pos, stop: gdbstub.Stop{Reason: gdbstub.StopHistoryEnd, Thread: d.pos.VCPU}}, nil
}

// kickIfInterrupted kicks every vCPU of r while an interrupt is pending.
func (d *Debugger) kickIfInterrupted(r *debugRun) {
	d.mu.Lock()
	intr := d.interrupted
	d.mu.Unlock()
	if intr {
		for _, v := range r.s.vcpus {
			v.Kick()
		}
	}
}

// resume gives the current replay cmd and waits for its stop.
func (d *Debugger) resume(cmd debugCmd) (gdbstub.Stop, error) {
	r := d.run
	if r.ended != nil {
		return gdbstub.Stop{Reason: gdbstub.StopHistoryEnd, Thread: d.pos.VCPU}, nil
	}
	cmd.bps = d.bps
	r.h.cmds <- cmd
	hit, err := d.wait(r)
	if err != nil {
		return gdbstub.Stop{}, err
	}
	d.at(hit)
	return d.stop, nil
}

// maxVisited bounds the positions remembered for monitor seek.
const maxVisited = 10000

// at records a stop as the current position.
func (d *Debugger) at(hit debugHit) {
	d.pos, d.stop = hit.pos, hit.stop
	if len(d.visited) < maxVisited {
		d.visited = append(d.visited, hit.pos)
	}
}

// Threads is the number of vCPUs.
func (d *Debugger) Threads() int { return len(d.run.s.vcpus) }

// Stopped is where the replay stands.
func (d *Debugger) Stopped() gdbstub.Stop { return d.stop }

// Continue runs forwards to the next hit.
func (d *Debugger) Continue() (gdbstub.Stop, error) {
	return d.resume(debugCmd{mode: modeContinue})
}

// Step executes one instruction of vCPU t.
func (d *Debugger) Step(t int) (gdbstub.Stop, error) {
	if err := d.checkKernelMode(t); err != nil {
		return gdbstub.Stop{}, err
	}
	from := d.pos
	st, err := d.resume(debugCmd{mode: modeStep, thread: t})
	if err == nil && st.Reason == gdbstub.StopStep && d.pos.VCPU == t && from.VCPU == t {
		d.prev[d.pos] = from
	}
	return st, err
}

// checkKernelMode refuses to single-step a vCPU in guest user mode: under
// PVM a single step there does not stop (PLATFORM.md, "Stopping
// exactly").
func (d *Debugger) checkKernelMode(t int) error {
	if !d.run.s.opts.KernelCount {
		return nil
	}
	sr, err := d.run.s.vcpus[t].Sregs()
	if err != nil {
		return err
	}
	if sr.CS.Selector&3 != 0 {
		err := fmt.Errorf("vCPU %d runs guest user code: under PVM a single step there does not stop (the host emulates only guest kernel code exactly); continue to a kernel breakpoint instead", t)
		d.log.Warn("step refused", zap.Error(err))
		return err
	}
	return nil
}

// Interrupt stops a running Continue or Step.
func (d *Debugger) Interrupt() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.interrupted = true
	if d.run != nil {
		d.run.h.interrupt.Store(true)
	}
}

// ReverseContinue goes back to the last hit before now, or to the start.
func (d *Debugger) ReverseContinue() (gdbstub.Stop, error) {
	now := d.pos
	if now.Chunk == 0 && now.Exits < 0 {
		return d.historyBegin()
	}
	// First pass: every hit between the nearest checkpoint and now, in
	// commit order; with none, between the one before and that one, and
	// so on back to the start.
	to := now
	for from := d.ckpts.before(now); ; from = d.ckpts.before(to) {
		if from != nil && !(Position{Chunk: from.chunk, Exits: -1}).before(to) {
			from = d.ckpts.beforeStrict(to)
		}
		first, err := d.restartHits(debugCmd{mode: modeCollect, target: to, bps: d.bps}, from)
		if err != nil {
			return gdbstub.Stop{}, err
		}
		if hits := first.hits; len(hits) > 0 {
			last := hits[len(hits)-1]
			if _, err := d.restartHits(debugCmd{mode: modeGoto, target: last.pos, reason: last.stop}, from); err != nil {
				return gdbstub.Stop{}, err
			}
			return d.stop, nil
		}
		if from == nil {
			return d.historyBegin()
		}
		to = Position{Chunk: from.chunk, Exits: -1}
	}
}

// historyBegin goes to the start of the recording and says so.
func (d *Debugger) historyBegin() (gdbstub.Stop, error) {
	if err := d.restart(debugCmd{mode: modeGoto, target: Position{Exits: -1}}); err != nil {
		return gdbstub.Stop{}, err
	}
	d.stop = gdbstub.Stop{Reason: gdbstub.StopHistoryBegin, Thread: d.pos.VCPU}
	return d.stop, nil
}

// ReverseStep goes back to the position vCPU t stood at before its last
// forward step to here.
func (d *Debugger) ReverseStep(t int) (gdbstub.Stop, error) {
	if d.pos.Chunk == 0 && d.pos.Exits < 0 {
		return d.historyBegin()
	}
	if from, ok := d.prev[d.pos]; ok && from.VCPU == t {
		if err := d.seek(from, gdbstub.Stop{Thread: t}); err != nil {
			return gdbstub.Stop{}, err
		}
		return d.stop, nil
	}
	// No forward step leads here: single-step again from the exit
	// before now to the instruction before it.
	now := d.pos
	if d.run.h.pages && now.VCPU == t && now.Exits >= 0 {
		return d.reverseStepState(now)
	}
	if now.VCPU != t || now.Exits < 0 || now.Insns == 0 {
		err := fmt.Errorf("reverse-stepi of vCPU %d from position %v: the previous instruction is in another chunk or made an exit; use reverse-continue", t, now)
		d.log.Warn("reverse step refused", zap.Error(err))
		return gdbstub.Stop{}, err
	}
	target := now
	target.Insns--
	if err := d.restart(debugCmd{mode: modeTrace, target: target}); err != nil {
		return gdbstub.Stop{}, err
	}
	return d.stop, nil
}

// reverseStepState is ReverseStep's retrace without a counter
// (debug_retrace.go): a replay walks now's page, or else a second one
// single-steps now's stretch from its start, to name the position before
// now; one more goes there.
func (d *Debugger) reverseStepState(now Position) (gdbstub.Stop, error) {
	before := d.stop
	hit, err := d.restartHits(debugCmd{mode: modeTrace, target: now}, d.ckpts.before(now))
	if err == nil && len(hit.hits) == 0 && d.run.h.traceMiss == missEnteredAt {
		hit, err = d.restartHits(debugCmd{mode: modeTrace, target: now, stepAll: true}, d.ckpts.before(now))
	}
	if err != nil {
		return gdbstub.Stop{}, err
	}
	if len(hit.hits) == 0 {
		why := "the previous instruction made an exit or is in another chunk"
		if miss := d.run.h.traceMiss; miss != "" {
			why = "the position was " + miss
		}
		err := fmt.Errorf("reverse-stepi of vCPU %d from position %v: %s; use reverse-continue", now.VCPU, now, why)
		d.log.Warn("reverse step refused", zap.Error(err))
		// Back to where gdb was.
		if serr := d.seek(now, before); serr != nil {
			return gdbstub.Stop{}, serr
		}
		return gdbstub.Stop{}, err
	}
	if err := d.seek(hit.hits[0].pos, gdbstub.Stop{Thread: now.VCPU}); err != nil {
		return gdbstub.Stop{}, err
	}
	return d.stop, nil
}

// seek goes to pos with a fresh replay and reports st there.
func (d *Debugger) seek(pos Position, st gdbstub.Stop) error {
	return d.restart(debugCmd{mode: modeGoto, target: pos, reason: st})
}
