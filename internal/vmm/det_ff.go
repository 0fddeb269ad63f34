package vmm

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
	"fmt"
	"time"
)

const (
	// ffWindow: below this many instructions from the point, runTo stops
	// fast-forwarding and uses breakpoints. A kick lands within
	// microseconds (kernel timer, threadtimer_unsafe.go), i.e. a few
	// instructions at ~1.4 M instructions/s; 2,000 instructions (~1.4 ms
	// of emulation) leave a wide margin for a late signal, and cost at most
	// a few hundred breakpoint passes.
	ffWindow = 2000
	// ffSeedRate is the assumed fastest emulation rate before one is
	// measured: PLATFORM.md measured ~1.4 M guest kernel instructions/s;
	// twice that.
	ffSeedRate = 3e6
	// ffSafety divides the time a run may take: a run aims at half the
	// remaining instructions at the fastest rate seen so far.
	ffSafety = 2
	// ffMinStep: shorter timers are dominated by the cost of entering
	// KVM_RUN and taking the signal.
	ffMinStep = 50 * time.Microsecond
)

// fastForward runs the vCPU freely for a stretch that cannot execute more
// than rem emulated kernel instructions. It reports exited when the vCPU
// made a real exit (not expected before a preemption point).
func (v *vcpu) fastForward(rem uint64) (exited bool, err error) {
	step := time.Duration(float64(rem) / (ffSafety * v.det.ffRate) * float64(time.Second))
	if step < ffMinStep {
		step = ffMinStep
	}
	if err := setGuestDebug(v.fd, 0, nil); err != nil {
		return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
	}
	before, err := v.kernelInsns()
	if err != nil {
		return false, err
	}
	setImmediateExit(v.run, false)
	if err := v.det.ffTimer.arm(step); err != nil {
		return false, err
	}
	start := time.Now()
	runErr := runVCPU(v.fd)
	elapsed := time.Since(start)
	if err := v.det.ffTimer.arm(0); err != nil {
		return false, err
	}
	v.det.ffTimer.consume()
	if runErr != nil && runErr != errInterrupted {
		return false, runErr
	}
	after, err := v.kernelInsns()
	if err != nil {
		return false, err
	}
	if rate := float64(after-before) / elapsed.Seconds(); rate > v.det.ffRate {
		v.det.ffRate = rate
	}
	v.det.ffRuns++
	return runErr == nil, nil
}
