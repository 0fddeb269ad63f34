package main

// The recorder's and replayer's switches (internal/session.Options) as
// flags. The chunk-end switches exist to compare the recorders with and
// without a refinement (tests/bench); the debug ones find the cause of a
// divergence (README, "Diagnostics"). All but --fast-forward are hidden
// from --help: a user never needs them.

import (
	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/session"
)

// sessionFlags are record's or replay's session switches.
type sessionFlags struct {
	o session.Options
}

// registerRecord adds record's switches.
func (f *sessionFlags) registerRecord(cmd *cobra.Command) {
	f.o = session.DefaultOptions()
	fl := cmd.Flags()
	fl.BoolVar(&f.o.PrivilegeEnds, "privilege-ends", f.o.PrivilegeEnds, "parallel recorder: end chunks at privilege changes")
	fl.BoolVar(&f.o.EarlyConflicts, "early-conflicts", f.o.EarlyConflicts, "parallel recorder: stop a chunk as soon as a commit dooms it")
	fl.BoolVar(&f.o.SpinChecks, "spin-checks", f.o.SpinChecks, "serialized recorder: preempt a vCPU in a kernel spin function early")
	fl.BoolVar(&f.o.StateMatch, "state-match", false, "serialized recorder without a counter (VMX/SVM): end chunks that spin without exits at state-matching stops (experimental)")
	fl.BoolVar(&f.o.StateStops, "state-stops", f.o.StateStops, "end a chunk that loops in guest code without exits where it stands, logging its state (on by default: both recorders on PVM, the serialized recorder on VMX/SVM; --state-stops=false turns it off)")
	fl.BoolVar(&f.o.DebugSquashAll, "debug-squash-all", false, "parallel recorder: squash every chunk once (a replay checks that squashes leave no trace)")
	f.registerDebug(cmd, "parallel recorder: write the hash of every page each chunk wrote to FILE (replay --debug-writes checks them)")
	for _, name := range []string{"privilege-ends", "early-conflicts", "spin-checks", "debug-squash-all"} {
		fl.MarkHidden(name)
	}
}

// registerReplay adds replay's switches.
func (f *sessionFlags) registerReplay(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.o.FastForward, "fast-forward", false, "run freely towards far preemption points (faster, but may pass a point: README, \"Replay\")")
	fl.DurationVar(&f.o.SignalStorm, "debug-signal-storm", 0, "interrupt the replaying vCPU this often (EINTRs must not change the replay)")
	fl.MarkHidden("debug-signal-storm")
	f.registerDebug(cmd, "compare memory after each chunk with the page hashes that record --debug-writes wrote to FILE")
}

// registerDebug adds the divergence diagnostics both commands have.
func (f *sessionFlags) registerDebug(cmd *cobra.Command, writes string) {
	fl := cmd.Flags()
	fl.DurationVar(&f.o.StallLimit, "stall-limit", 0, "end with an error naming each vCPU's state when no chunk ends for this long (0: 2m30s)")
	fl.StringVar(&f.o.DebugWrites, "debug-writes", "", writes)
	fl.StringVar(&f.o.DumpMemory, "dump-memory", "", "write guest memory to FILE when the final digest is taken")
	fl.MarkHidden("debug-writes")
	fl.MarkHidden("dump-memory")
}
