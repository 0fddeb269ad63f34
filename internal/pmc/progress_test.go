package pmc

import (
	"errors"
	"github.com/samsara-vmm/samsara/internal/kvmtest"
	"runtime"
	"testing"
)

// runToExit runs until a guest exit other than EINTR.
func runToExit(t testing.TB, c *Counter) {
	t.Helper()
	for {
		err := c.Run()
		if errors.Is(err, ErrInterrupted) {
			continue
		}
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return
	}
}

// The counted window adds a constant, and Read takes it off: a KVM_RUN that
// never enters the guest (immediate_exit) leaves the progress unchanged.
func TestRunOverheadIsSubtracted(t *testing.T) {
	lockThread(t)
	v := newTestVM(t, true, loopThenOUT)
	c := newPMUCounter(t, v)
	t.Logf("RunOverhead = %d user branches per Run", c.RunOverhead())
	v.setImmediateExit(true)
	before := read(t, c)
	for i := 0; i < 100; i++ {
		if err := c.Run(); !errors.Is(err, ErrInterrupted) {
			t.Fatalf("Run with immediate_exit: %v, want ErrInterrupted", err)
		}
	}
	if got := read(t, c).Sub(before); got != (Point{}) {
		t.Errorf("100 empty runs moved progress by %v, want 0", got)
	}
}

// Guest user mode is counted exactly: a CPL3 loop of n conditional branches
// adds n user branches. Without a PMU only the guest side is checked.
func TestUserBranchesExact(t *testing.T) {
	lockThread(t)
	v := newTestVM(t, true, loopThenOUT)
	c := newCounter(t, v)
	pmu := havePMU()
	for _, n := range []uint64{1, 2, 1000, 123457, 10_000_000} {
		v.setLoop(t, n)
		before := read(t, c)
		runToExit(t, c)
		if r := v.exitReason(); r != exitIO {
			t.Fatalf("n=%d: exit reason %d, want KVM_EXIT_IO", n, r)
		}
		if r := v.regs(t); r.RCX != 0 {
			t.Fatalf("n=%d: exit with rcx=%d", n, r.RCX)
		}
		d := read(t, c).Sub(before)
		if pmu && d.UserBranches != n {
			t.Errorf("n=%d: %d user branches counted", n, d.UserBranches)
		}
		t.Logf("n=%d: %v (the kernel instructions are the emulated OUT)", n, d)
	}
}

// Guest kernel mode is counted exactly by insn_emulation: the CPL0 loop of
// n iterations is 2n+1 instructions with the HLT, and no user branches.
func TestKernelInsnsExact(t *testing.T) {
	kvmtest.RequirePVM(t)
	lockThread(t)
	v := newTestVM(t, false, loopThenHLT)
	c := newCounter(t, v)
	for _, n := range []uint64{1, 10, 5000} {
		v.setLoop(t, n)
		before := read(t, c)
		runToExit(t, c)
		if r := v.exitReason(); r != exitHLT {
			t.Fatalf("n=%d: exit reason %d, want KVM_EXIT_HLT", n, r)
		}
		if d := read(t, c).Sub(before); d != (Point{KernelInsns: 2*n + 1}) {
			t.Errorf("n=%d: progress %v, want %v", n, d, Point{KernelInsns: 2*n + 1})
		}
	}
}

// Run enters the syscall state through the runtime's entersyscall: garbage
// collections running meanwhile on other threads must neither deadlock nor
// disturb the counts.
func TestRunDuringGC(t *testing.T) {
	kvmtest.RequirePVM(t)
	lockThread(t)
	v := newTestVM(t, false, loopThenHLT)
	c := newCounter(t, v)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var sink [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			sink = append(sink, make([]byte, 1<<16))
			if len(sink) > 64 {
				sink = nil
				runtime.GC()
			}
		}
	}()
	start := read(t, c)
	const runs, n = 200, 20
	for i := 0; i < runs; i++ {
		v.setLoop(t, n)
		runToExit(t, c)
	}
	close(stop)
	<-done
	if got := read(t, c).Sub(start).KernelInsns; got != runs*(2*n+1) {
		t.Errorf("%d kernel insns over %d runs, want %d", got, runs, runs*(2*n+1))
	}
}
