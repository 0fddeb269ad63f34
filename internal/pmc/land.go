package pmc

// Landing on a recorded point with a hardware counter (issue 11, item
// 1a): the PMU backend of hardware virtualization (VMX/SVM with a PMU,
// what most users have). It cannot run on this project's machines, which
// have no PMU (PLATFORM.md; doc.go), so it is kept small and its logic is
// tested against instruction traces recorded by `samsara trace`
// (land_test.go).
//
// The counter is the guest's retired conditional branches (rr's "ticks"),
// counted in guest user and kernel mode alike (exclude_host=1:
// GuestBranchEvent). A recorded point is (branches since the chunk's
// start, RIP, register hash). The counter's overflow interrupt arrives
// late by up to a skid that depends on the CPU (SkidMargin), so replay
// arms it that many branches early, then lets a hardware breakpoint on
// the point's RIP stop the vCPU at each pass, single-stepping over each
// hit that is not the point, until the count, the RIP and the registers
// all match: rr's method. Count and RIP alone are not unique (a REP
// string instruction, a loop whose body has no conditional branch), the
// registers tell those passes apart.

import (
	"errors"
	"fmt"
)

// Skid margins: how many conditional branches an overflow interrupt may
// arrive after the count it was armed for, per CPU family. The figures are
// rr's (src/PerfCounters.cc, pmu_configs): 100 on Intel from Nehalem to
// Tiger Lake, 125 from Alder Lake on, 10000 on AMD Zen 1-4, where rr also
// flags the skid as unbounded in rare cases (Land then fails with
// ErrPassed or ErrExitFirst, never lands on a wrong point).
const (
	SkidMarginIntel = 125
	SkidMarginAMD   = 10000
)

// Guest branch events (perf_event_attr.config of PERF_TYPE_RAW) for the
// PMU backend, counted with exclude_host=1 so that the VMM's own branches
// do not count: the same events rr counts (src/PerfCounters.cc).
const (
	// GuestBranchEventIntel is BR_INST_RETIRED.CONDITIONAL (event 0xc4,
	// umask 0x01; 0x51 = USR|OS|EN bits) up to Comet Lake;
	// GuestBranchEventIntelICL the same from Ice Lake on (umask 0x11).
	GuestBranchEventIntel    = 0x5101c4
	GuestBranchEventIntelICL = 0x5111c4
	// GuestBranchEventAMD is "retired conditional branch instructions"
	// (PPR event 0xd1), RawRetiredCondBranches with the same bits.
	GuestBranchEventAMD = 0x5100d1
)

// Target is a recorded point: the vCPU's retired conditional branches
// since the segment's start, its RIP and its register hash there.
type Target struct {
	Branches uint64
	RIP      uint64
	Regs     uint64
}

func (t Target) String() string {
	return fmt.Sprintf("%d branches at RIP %#x (registers %016x)", t.Branches, t.RIP, t.Regs)
}

// Stop is how one of LandVCPU's runs ended.
type Stop int

const (
	// StopInterrupted: the armed overflow (or a kick) interrupted it.
	StopInterrupted Stop = iota
	// StopBreakpoint: the vCPU stands at the breakpoint's RIP, before
	// the instruction there runs.
	StopBreakpoint
	// StopStepped: one instruction ran.
	StopStepped
	// StopExited: a real exit (I/O, MMIO, HLT) came first.
	StopExited
)

// LandVCPU is what landing needs of a vCPU: an interface so that the
// tests drive Land over recorded traces, and a VMM over KVM.
type LandVCPU interface {
	// Branches is the count since the segment's start.
	Branches() (uint64, error)
	// At is where the vCPU stands: RIP and register hash.
	At() (rip, regs uint64, err error)
	// RunOverflow runs the vCPU with the overflow armed to interrupt it
	// once n more branches have retired (it may stop up to a skid
	// later, or earlier at a real exit).
	RunOverflow(n uint64) (Stop, error)
	// RunToBreakpoint runs the vCPU until it reaches rip (a hardware
	// execute breakpoint: it stops before that instruction runs, at once
	// if it stands there) or exits.
	RunToBreakpoint(rip uint64) (Stop, error)
	// Step runs one instruction.
	Step() (Stop, error)
}

// Errors of Land.
var (
	// ErrPassed: the vCPU went past the target: the overflow's skid
	// exceeded the margin, or the replay diverged.
	ErrPassed = errors.New("the vCPU passed the recorded point")
	// ErrExitFirst: a real exit came before the target.
	ErrExitFirst = errors.New("an exit came before the recorded point")
	// ErrNoLanding: the breakpoint passes did not reach the target
	// within the bound.
	ErrNoLanding = errors.New("the recorded point was not reached")
)

// LandError is a landing that failed: where the vCPU stood.
type LandError struct {
	Err      error
	Target   Target
	Branches uint64
	RIP      uint64
	Hits     int // breakpoint stops at the target's RIP that were not it
}

func (e *LandError) Error() string {
	return fmt.Sprintf("%v: want %v, the vCPU stands at %d branches at RIP %#x after %d breakpoint hits", e.Err, e.Target, e.Branches, e.RIP, e.Hits)
}

func (e *LandError) Unwrap() error { return e.Err }

// Land brings v to t: an overflow run to margin+1 branches before it
// (when it lies further), then breakpoint passes, each hit that is not t
// stepped over, for at most maxHits hits. margin is the CPU's skid
// (SkidMarginIntel, SkidMarginAMD).
func Land(v LandVCPU, t Target, margin uint64, maxHits int) error {
	hits := 0
	fail := func(err error) error {
		le := &LandError{Err: err, Target: t, Hits: hits}
		le.Branches, _ = v.Branches()
		le.RIP, _, _ = v.At()
		return le
	}
	n, err := v.Branches()
	if err != nil {
		return err
	}
	if n > t.Branches {
		return fail(ErrPassed)
	}
	if t.Branches-n > margin+1 {
		// Armed one branch earlier still: an interrupt margin branches
		// late then stands before the target's last branch has retired,
		// so not yet past any instruction of the point's count.
		stop, err := v.RunOverflow(t.Branches - margin - 1 - n)
		if err != nil {
			return err
		}
		if stop == StopExited {
			return fail(ErrExitFirst)
		}
	}
	for {
		n, err := v.Branches()
		if err != nil {
			return err
		}
		if n > t.Branches {
			return fail(ErrPassed)
		}
		rip, regs, err := v.At()
		if err != nil {
			return err
		}
		if rip == t.RIP && n == t.Branches && regs == t.Regs {
			return nil
		}
		var stop Stop
		if rip == t.RIP {
			// A pass that is not the point: the breakpoint would stop
			// here again, so step over it.
			if hits++; hits > maxHits {
				return fail(ErrNoLanding)
			}
			stop, err = v.Step()
		} else {
			stop, err = v.RunToBreakpoint(t.RIP)
		}
		if err != nil {
			return err
		}
		if stop == StopExited {
			return fail(ErrExitFirst)
		}
	}
}
