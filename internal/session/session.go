// Package session records and replays a machine: the serialized recorder,
// the parallel recorder and the replayer (DESIGN.md, "One log, one
// replayer, two recorders"), as sessions over one internal/vmm Machine.
//
// It owns when a vCPU runs, where a chunk ends, what a chunk's record
// holds, virtual time's steps, digests and DivergenceError. It may import
// vmm (the machine it drives), chunk (chunk-end policy), commit (the total
// order), ept (page trackers), pmc (progress counters), log (records),
// kvm (thread timers) and treehash; vmm imports none of these
// (internal/layout enforces it).
//
// A session reads no environment: every switch is an Options field, set
// from the command line, and the ones that change what is recorded are
// in the log header (log.RecorderOptions).
package session

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/pmc"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// Options are the recorder's and replayer's switches.
type Options struct {
	// Logger receives chunk and preemption traces at debug level.
	Logger *zap.Logger

	// Parallel selects the parallel recorder (the machine must be built
	// with vmm.Config.SeparateVMs); Tracker names its page tracker
	// ("" = ept's default).
	Parallel bool
	Tracker  string

	// KernelCount: the host counts every guest kernel instruction exactly
	// (PVM's insn_emulation statistic), so chunks may end by preemption
	// in guest kernel code and at privilege changes, points replay finds
	// by count. Without it (hardware virtualization without a PMU) chunks
	// end only at exits, and the guest kernel's busy-waits exit to the
	// yield port (vmm.YieldPort) so the recorders can hand over there.
	KernelCount bool

	// The recording switches below change where chunks end, so they are
	// logged in the header (Recorder); DefaultOptions turns them on.

	// PrivilegeEnds: the parallel recorder ends chunks at privilege
	// changes (det_bounds.go).
	PrivilegeEnds bool
	// EarlyConflicts: the parallel recorder aborts a running chunk that a
	// commit has already doomed (det_early.go).
	EarlyConflicts bool
	// SpinChecks: the serialized recorder preempts a vCPU found in a
	// kernel spin function early (det_spin.go).
	SpinChecks bool
	// StateMatch: without a counter (hardware virtualization), the
	// serialized recorder ends a chunk spinning without exits at a
	// state-matching stop (det_match.go). Off by default: in the emulated
	// host one replay of a daemon-made 2-vCPU race recording diverged
	// with it on (cause not found yet).
	StateMatch bool
	// StateStops: a recorder ends a chunk that has made no exit for
	// long, where no counted point is near, by logging the state it
	// stands in (det_stop.go): guest user mode on PVM (both recorders),
	// any guest code without a counter (the serialized recorder only:
	// serialStops, parallelStops). DefaultOptions turns it on. Measured
	// in the emulated SVM host, 2026-12-07, the serialized corpus with
	// stops (2 vCPUs): alarm_loop, setitimer_virtual and munmap_in_use
	// pass (they failed or stalled without), sched_yield and
	// thread_exit_busy time out at 30 s of guest time instead of
	// stalling samsara, and the replay matched.
	StateStops bool
	// DebugSquashAll squashes every parallel chunk once before committing
	// it: a replay of such a recording checks that a squash leaves no
	// trace.
	DebugSquashAll bool

	// FastForward lets replay run a vCPU freely towards a far preemption
	// point (det_ff.go); off by default (README, "Replay").
	FastForward bool
	// SignalStorm, when non-zero, interrupts the replaying vCPU this
	// often (diagnostics: EINTRs must not be visible to the guest).
	SignalStorm time.Duration
	// DebugWrites names a file of per-chunk written-page hashes: a
	// parallel recording writes it, a replay checks against it
	// (det_debug.go).
	DebugWrites string
	// StallLimit bounds how long a recording or replay may go without a
	// chunk before it ends with a *StallError (0: defaultStallLimit).
	StallLimit time.Duration
	// DumpMemory names a file to write guest memory to when the final
	// digest is taken, to find what differs when a replay diverges.
	DumpMemory string
}

// DefaultOptions are the recorders' defaults: every chunk-end refinement
// on, diagnostics off.
func DefaultOptions() Options {
	return Options{KernelCount: true, PrivilegeEnds: true, EarlyConflicts: true, SpinChecks: true, StateStops: true}
}

// serialStops reports whether the serialized recorder takes state stops
// (det_stop.go): with a counter or without.
func (o Options) serialStops() bool { return o.StateStops && !o.Parallel }

// parallelStops reports whether the parallel recorder takes state stops:
// on PVM only, where replay finds a stop's user-mode point
// (runToCodePage).
func (o Options) parallelStops() bool { return o.StateStops && o.Parallel && o.KernelCount }

// Recorder is the header record of the options that shaped a recording.
func (o Options) Recorder() *log.RecorderOptions {
	return &log.RecorderOptions{KernelCount: o.KernelCount, PrivilegeEnds: o.PrivilegeEnds && o.KernelCount,
		EarlyConflicts: o.EarlyConflicts, SpinChecks: o.SpinChecks && o.KernelCount, StateMatch: o.StateMatch && !o.KernelCount, StateStops: o.serialStops() || o.parallelStops(), DebugSquashAll: o.DebugSquashAll}
}

// Session records or replays one machine.
type Session struct {
	m     *vmm.Machine
	opts  Options
	log   *zap.Logger
	vcpus []*vcpu
	// det0 is the virtual time when record or replay started.
	det0 int64
	// chunksDone counts chunks recorded or replayed (Progress).
	chunksDone atomic.Int64
	// par is the parallel recorder's state (nil unless Options.Parallel).
	par *parallel
	// debugWrites are the per-chunk write hashes (det_debug.go).
	debugWrites *writeHashes
	// stalledAfter is how long no chunk had ended when the stall
	// watchdog stopped the machine (stall.go).
	stalledAfter time.Duration
	// dbg is the debugger's hook into a replay (debug_hook.go), nil when
	// no debugger drives it.
	dbg *debugHook
	// exp is the trace expansion's state (trace_expand.go), nil when
	// the replay writes no trace.
	exp *Expander
	// stop gathers the state stop records of the chunk replay runs next
	// (det_stop.go).
	stop pendingStop
	// dirtyCleared is when the recorder last started a new dirty-log
	// period (det_stop.go).
	dirtyCleared time.Time
	// recordStart and recordEnd bound Record, for Profile (profile.go).
	recordStart, recordEnd time.Time
}

// vcpu is a vCPU's record/replay state beside the machine's vCPU.
type vcpu struct {
	*vmm.VCPU
	s  *Session
	id int
	// stats reads insn_emulation.
	stats *pmc.Stats
	// base is insn_emulation when the recording started.
	base uint64
	// last is the count at the chunk's start or its last exit.
	last uint64
	// turn receives the chunk to run (replay: the record; record: nil).
	turn chan *log.Chunk
	// ffTimer interrupts replay's fast-forward runs (det_ff.go) and
	// runTo's bounded runs; created on the vCPU's thread.
	ffTimer *kvmsys.ThreadTimer
	// ffRate is the fastest emulation rate seen, instructions per second.
	ffRate float64
	// ffRuns counts fast-forward runs (tracing).
	ffRuns int
	// dbgArmed: the debugger left guest debugging on for this vCPU
	// (debug_hook.go, armDebug); off, it need not be turned off again.
	dbgArmed bool
	// runToStarted is when runTo started, moved on by the time a
	// debugger held the vCPU (debug_hook.go, pause).
	runToStarted time.Time
	// debugSquashed: this vCPU's current chunk was squashed once already
	// (Options.DebugSquashAll).
	debugSquashed bool
	// prof is the vCPU's time per phase (profile.go).
	prof phaseClock
	// stops are the state stop records of the chunk just recorded
	// (det_stop.go), nil when it did not end at one.
	stops []*log.StateStop
	// stopNotBefore paces the vCPU's state stops (det_stop.go,
	// stopLogRate).
	stopNotBefore time.Time
	// exitRegs hashes the registers after the chunk's last exit was
	// handled (at its start before one), for a state stop's ExitRegs;
	// kept only without a counter (det_stop.go, noteExitRegs).
	exitRegs uint64
	// endNote describes where the vCPU's last replayed chunk ended, for a
	// divergence report (det.go, replayEndNote).
	endNote string
	// debugEnd is the vCPU's last replayed chunk's end, kept for the
	// replay's --debug-writes comparison (det_debug.go).
	debugEnd chunkEnd
}

// New prepares m, a machine built with Deterministic set, for recording or
// replay with o: every vCPU's progress counter, and for the parallel
// recorder its page tracker and views.
func New(m *vmm.Machine, o Options) (_ *Session, err error) {
	if !m.Deterministic() {
		return nil, fmt.Errorf("record and replay need a machine built with Deterministic set")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if !o.KernelCount {
		// Both need exact kernel counts (det_bounds.go, det_spin.go).
		o.PrivilegeEnds, o.SpinChecks = false, false
	}
	s := &Session{m: m, opts: o, log: o.Logger.Named("session")}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, mv := range m.VCPUs() {
		v, err := s.openVCPU(mv)
		if err != nil {
			return nil, err
		}
		s.vcpus = append(s.vcpus, v)
	}
	if o.Parallel {
		if err := s.newParallel(); err != nil {
			return nil, err
		}
	}
	if o.DebugWrites != "" {
		s.debugWrites = &writeHashes{}
	}
	return s, nil
}

// openVCPU opens the insn_emulation counter of mv.
func (s *Session) openVCPU(mv *vmm.VCPU) (*vcpu, error) {
	fd, err := mv.StatsFD()
	if err != nil {
		return nil, fmt.Errorf("vcpu %d KVM_GET_STATS_FD: %w (record/replay needs KVM binary statistics)", mv.ID(), err)
	}
	st, err := pmc.OpenStats(fd)
	if err != nil {
		closeFD(fd)
		return nil, err
	}
	if !st.Has("insn_emulation") {
		st.Close()
		return nil, fmt.Errorf("vcpu %d: KVM has no insn_emulation statistic; record/replay needs it (see samsara probe)", mv.ID())
	}
	base, err := st.Read("insn_emulation")
	if err != nil {
		st.Close()
		return nil, err
	}
	return &vcpu{VCPU: mv, s: s, id: mv.ID(), stats: st, base: base, turn: make(chan *log.Chunk)}, nil
}

// Close releases the counters, timers and views (the machine stays open;
// close it after the session).
func (s *Session) Close() {
	for _, v := range s.vcpus {
		v.stats.Close()
		if v.ffTimer != nil {
			v.ffTimer.Close()
		}
	}
	s.vcpus = nil
	if s.par != nil {
		s.par.close()
		s.par = nil
	}
}

// Progress is how far a recording or replay has come.
type Progress struct {
	Chunks     int64 // chunks recorded or replayed
	GuestNanos int64 // guest (virtual) time since the start
}

// Progress reports how far Record or Replay has come; safe to call from
// any goroutine while they run.
func (s *Session) Progress() Progress {
	return Progress{Chunks: s.chunksDone.Load(), GuestNanos: s.m.VirtualTime() - s.det0}
}

// tracing reports whether chunk and preemption tracing is on (samsara -v:
// the logger at debug level); the traces are formatted only then.
func (s *Session) tracing() bool { return s.log.Core().Enabled(zapcore.DebugLevel) }

// kernelInsns returns the vCPU's emulated kernel instructions since the
// recording started.
func (v *vcpu) kernelInsns() (uint64, error) {
	n, err := v.stats.Read("insn_emulation")
	return n - v.base, err
}

// cpuState returns the vCPU's general and special registers.
func (v *vcpu) cpuState() (*kvm.Regs, *kvm.Sregs, error) {
	r, err := v.Regs()
	if err != nil {
		return nil, nil, err
	}
	sr, err := v.Sregs()
	if err != nil {
		return nil, nil, err
	}
	return r, sr, nil
}
