package session

// Replay fast-forward. runTo (det.go) lands on a preemption point with a
// hardware breakpoint on its RIP and single steps, which costs two debug
// exits (~40 us each here) per pass of the loop the point lies in. The
// recorder preempts guest kernels that spin on a lock, so points sit in
// hot loops: a 50 ms spin is ~70,000 instructions and ~3,700 passes, and
// replaying such a recording took 3x its recording time (dedup, 2 vCPUs:
// 728,156 debug exits for 98 points).
//
// Without a PMU nothing stops a vCPU after N instructions, but the
// emulator runs kernel code at a bounded rate, so running freely for
// remaining/(ffSafety x fastest rate seen) of wall time cannot pass the
// point. runTo repeats such runs, each covering about half of what is
// left, until the point is fewer than ffWindow instructions away, and
// then arms the breakpoint. Passing the point is still detected (runTo's
// "preemption point passed" divergence), never silent.

import (
	"errors"
	"fmt"
	"time"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

const (
	// ffWindow: below this many instructions from the point, runTo stops
	// fast-forwarding and uses breakpoints. A kick lands within
	// microseconds (kernel timer, internal/kvm's ThreadTimer), i.e. a few
	// instructions at ~1.4 M instructions/s; 2,000 instructions (~1.4 ms
	// of emulation) leave a wide margin for a late signal, and cost at most
	// a few hundred breakpoint passes.
	ffWindow = 2000
	// ffSeedRate is the assumed fastest emulation rate, instructions per
	// second. PLATFORM.md measured ~1.4 M guest kernel instructions/s on
	// average; an assumed 3 M/s with a safety factor of 2 still passed
	// the point in about 1 of 40 replays of one recording (race, 2 vCPUs;
	// 0 of 40 without fast-forward), so bursts run well above the
	// average. 20 M/s (50 ns per emulated instruction) is beyond anything
	// measured; at it a run covers ~7% of what is left at the average
	// rate, so reaching a point 70,000 instructions away takes ~40 runs,
	// ~2 ms of overhead on the ~50 ms of emulation itself.
	ffSeedRate = 2e7
	// ffSafety divides the time a run may take by the fastest rate seen
	// (never below ffSeedRate): 1, because ffSeedRate itself is the margin;
	// a rate measured above it raises the bound to twice the measurement.
	ffSafety = 1
	// ffAfterHits: fast-forward starts only after this many breakpoint
	// hits at the point's RIP. Interrupting the vCPU at arbitrary points
	// is not free of effects: replays that fast-forwarded from the start
	// of every segment passed a point in 2 of 80 runs (race, 2 vCPUs; at
	// clear_page_erms and mas_wr_walk, not in loops), while breakpoints
	// alone never did; the points that make replay slow are in spin loops,
	// which hit the breakpoint on every pass.
	ffAfterHits = 64
	// ffMinStep: shorter timers are dominated by the cost of entering
	// KVM_RUN and taking the signal.
	ffMinStep = 50 * time.Microsecond
)

// Fast-forward is off unless Options.FastForward (replay --fast-forward).
// Measured (the late runs are traced at debug level, samsara -v): a
// signal sent to a vCPU running emulated guest kernel code often ends
// KVM_RUN only at the next host timer tick, 2.5-5.3 ms after the timer
// fired, where 0.1-0.3 ms was asked; at ~1.4 M instructions/s that is
// thousands of instructions past the bound, and replays fast-forwarded
// past the point in 2 of 80 runs (race, 2 vCPUs; one hung in a user-mode
// spin). A safe run must stop ~5 ms of emulation short of the point, more
// than the spin segments it is for; breakpoints alone never missed (40 of
// 40), so they are the default.

// fastForward runs the vCPU freely for a stretch that cannot execute more
// than rem emulated kernel instructions. It reports exited when the vCPU
// made a real exit (not expected before a preemption point).
func (v *vcpu) fastForward(rem uint64) (exited bool, err error) {
	step := max(time.Duration(float64(rem)/(ffSafety*v.ffRate)*float64(time.Second)), ffMinStep)
	if err := v.SetGuestDebug(0, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	before, err := v.kernelInsns()
	if err != nil {
		return false, err
	}
	start := time.Now()
	runErr, terr := v.enterTimed(step) // det.go
	elapsed := time.Since(start)
	if terr != nil {
		return false, terr
	}
	if elapsed > 10*step+time.Millisecond {
		v.trace("FF vcpu %d: run took %v for a %v step (err %v exit %d)", v.id, elapsed, step, runErr, v.ExitReason())
	}
	if runErr != nil && !errors.Is(runErr, vmm.ErrInterrupted) {
		return false, runErr
	}
	after, err := v.kernelInsns()
	if err != nil {
		return false, err
	}
	if rate := float64(after-before) / elapsed.Seconds(); rate > v.ffRate {
		v.ffRate = 2 * rate
	}
	v.ffRuns++
	return runErr == nil, nil
}
