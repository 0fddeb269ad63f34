package pmc

import (
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// overflowSignal is the signal the tests arm overflows with.
const overflowSignal = unix.SIGIO

// The overflow plumbing on any host: a software clock event (task-clock,
// nanoseconds of thread time) stands in for the branch counter, so no PMU
// is needed. An armed overflow must interrupt a guest spinning in user mode
// (Run returns ErrInterrupted), and Run must dequeue the signal itself.
// The time counted past the period estimates the part of the skid that
// comes after the overflow interrupt (signal, exit from the guest), which
// the hardware counter shares; the loop's own rate turns it into branches.
func TestOverflowSignalInterruptsRun(t *testing.T) {
	lockThread(t)
	v := newTestVM(t, true, loopThenOUT)
	c, err := newCounterWith(v.vcpuFD, openSoftwareEvent(unix.PERF_COUNT_SW_TASK_CLOCK, idlePeriod), false)
	if err != nil {
		t.Skipf("software task-clock event unavailable: %v", err)
	}
	defer c.Close()
	v.setLoop(t, 1<<40) // hours of guest time: only a signal ends the run
	var skids []float64
	var pastNs []int64
	for _, period := range []uint64{1_000_000, 2_000_000, 3_000_000, 1_000_000, 2_000_000, 3_000_000} {
		if err := c.ArmOverflow(period, overflowSignal); err != nil {
			t.Fatal(err)
		}
		rcx0 := v.regs(t).RCX
		before := read(t, c)
		err := c.Run()
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("Run: %v (exit %d), want ErrInterrupted", err, v.exitReason())
		}
		if got := c.args.waitRet; got != uintptr(overflowSignal) {
			t.Errorf("period %d: rt_sigtimedwait returned %#x, want the overflow signal %d dequeued", period, got, overflowSignal)
		}
		ns := read(t, c).Sub(before).UserBranches // task-clock: ns
		iters := rcx0 - v.regs(t).RCX
		if ns < period {
			continue // interrupted by something else first
		}
		rate := float64(iters) / float64(ns) // loop branches per ns
		skids = append(skids, float64(ns-period)*rate)
		pastNs = append(pastNs, int64(ns-period))
		t.Logf("period %dns: ran %dns, %d loop branches (%.2f/ns): %dns past the overflow, ~%.0f branches",
			period, ns, iters, rate, ns-period, float64(ns-period)*rate)
	}
	if err := c.DisarmOverflow(); err != nil {
		t.Fatal(err)
	}
	if len(skids) == 0 {
		t.Fatal("no run ended by the overflow")
	}
	slices.Sort(skids)
	slices.Sort(pastNs)
	t.Logf("guest ran %dns..%dns (median %dns) past the overflow", pastNs[0], pastNs[len(pastNs)-1], pastNs[len(pastNs)/2])
	t.Logf("loop branches run past the clock overflow: min %.0f median %.0f max %.0f", skids[0], skids[len(skids)/2], skids[len(skids)-1])
}

// A kick (SIGURG from another thread, as internal/vmm sends) interrupts
// Run; the Go handler runs after the counter is disabled, so with a PMU the
// count still matches the registers exactly.
func TestKickInterruptsRun(t *testing.T) {
	lockThread(t)
	v := newTestVM(t, true, loopThenOUT)
	c := newCounter(t, v)
	const n0 = 1 << 40
	v.setLoop(t, n0)
	start := read(t, c)
	tid := unix.Gettid()
	for i := 0; i < 3; i++ {
		// Kick every 3 ms until Run returns, not once: a single kick
		// can land before the thread enters KVM_RUN, where the Go
		// runtime takes it and the 2^40-iteration loop then runs on
		// (seen in the emulated SVM host on a busy machine: the test
		// hung there).
		stop := make(chan struct{})
		kicked := make(chan struct{})
		go func() {
			defer close(kicked)
			tick := time.NewTicker(3 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
				}
			}
		}()
		err := c.Run()
		close(stop)
		<-kicked
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("Run: %v (exit %d), want ErrInterrupted", err, v.exitReason())
		}
	}
	r := v.regs(t)
	got := read(t, c).Sub(start).UserBranches
	if fd, err := openProgressCounter(); err != nil {
		t.Logf("kicked 3 times at rcx=%d; counts not checked: %v", r.RCX, err)
		return
	} else {
		unix.Close(fd)
	}
	if want := userLoopBranches(n0, r); got != want {
		t.Errorf("after 3 kicks: %d user branches counted, registers say %d", got, want)
	}
}

// Overflow skid with the hardware counter: how far past the requested
// count a CPL3 loop is when Run returns. Every reading is also checked
// against the loop's registers, so the counts stay exact across
// interruptions.
func TestOverflowSkid(t *testing.T) {
	lockThread(t)
	v := newTestVM(t, true, loopThenOUT)
	c := newPMUCounter(t, v)
	const n0 = 1 << 40
	v.setLoop(t, n0)
	start := read(t, c)
	for _, period := range []uint64{1000, 100_000, 3_000_000} {
		var skids []int64
		for i := 0; i < 8; i++ {
			before := read(t, c)
			if err := c.ArmOverflow(period, overflowSignal); err != nil {
				t.Fatal(err)
			}
			// A stray signal (a runtime preemption) may interrupt early:
			// run on until the requested count is passed.
			var now Point
			for {
				if err := c.Run(); !errors.Is(err, ErrInterrupted) {
					t.Fatalf("Run: %v (exit %d), want ErrInterrupted", err, v.exitReason())
				}
				now = read(t, c)
				if now.UserBranches-before.UserBranches >= period {
					break
				}
			}
			skids = append(skids, int64(now.UserBranches-before.UserBranches-period))
			if want := userLoopBranches(n0, v.regs(t)); now.Sub(start).UserBranches != want {
				t.Fatalf("counted %d user branches, registers say %d", now.Sub(start).UserBranches, want)
			}
		}
		slices.Sort(skids)
		t.Logf("period %d: skid min %d median %d max %d branches", period, skids[0], skids[len(skids)/2], skids[len(skids)-1])
		if skids[len(skids)-1] > 1_000_000 {
			t.Errorf("period %d: skid %d branches: the overflow signal is not stopping the guest promptly", period, skids[len(skids)-1])
		}
	}
	if err := c.DisarmOverflow(); err != nil {
		t.Fatal(err)
	}
}

// The same software clock overflow without KVM: a host thread polls for the
// signal. What it counts past the period is the clock's own lateness plus
// the signal path, which TestOverflowSignalInterruptsRun's figure includes;
// the difference between the two is the cost of leaving the guest.
func TestClockOverflowLatencyWithoutKVM(t *testing.T) {
	lockThread(t)
	fd, err := openSoftwareEvent(unix.PERF_COUNT_SW_TASK_CLOCK, idlePeriod)()
	if err != nil {
		t.Skipf("software task-clock event unavailable: %v", err)
	}
	defer unix.Close(fd)
	if err := setOverflowSignal(fd, unix.Gettid(), overflowSignal); err != nil {
		t.Fatal(err)
	}
	old, err := threadSignalMask()
	if err != nil {
		t.Fatal(err)
	}
	block := uint64(1) << (overflowSignal - 1)
	sigprocmask(t, unix.SIG_BLOCK, block)
	defer sigprocmask(t, unix.SIG_SETMASK, old)
	var late []int64
	for i := 0; i < 6; i++ {
		const period = 1_000_000
		if err := setPeriod(fd, period); err != nil {
			t.Fatal(err)
		}
		before, _ := readCount(fd)
		unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_ENABLE, 0)
		for !sigPending(overflowSignal) {
		}
		unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_DISABLE, 0)
		after, _ := readCount(fd)
		consumeSignal(t, overflowSignal)
		late = append(late, int64(after-before)-period)
	}
	slices.Sort(late)
	t.Logf("task-clock overflow seen by a host thread %dns..%dns (median %dns) past the period", late[0], late[len(late)-1], late[len(late)/2])
}
