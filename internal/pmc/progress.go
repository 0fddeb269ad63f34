package pmc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
)

// Point is a vCPU's guest progress on a PVM host: both components only grow,
// and together they identify an instruction boundary of the vCPU's
// execution (with RIP and registers to disambiguate, as in rr).
type Point struct {
	// UserBranches counts conditional branches retired by the guest in
	// user mode (CPL3, run natively; perf raw 0xd1, user only).
	UserBranches uint64
	// KernelInsns counts guest instructions run through KVM's emulator
	// (CPL0 under PVM, plus any CPL3 instruction KVM had to emulate, such
	// as an MMIO access): the vCPU's insn_emulation statistic.
	KernelInsns uint64
}

// Sub returns p - q component-wise (q must not be ahead of p).
func (p Point) Sub(q Point) Point {
	return Point{UserBranches: p.UserBranches - q.UserBranches, KernelInsns: p.KernelInsns - q.KernelInsns}
}

// Add returns p + q component-wise.
func (p Point) Add(q Point) Point {
	return Point{UserBranches: p.UserBranches + q.UserBranches, KernelInsns: p.KernelInsns + q.KernelInsns}
}

// AtOrBefore reports whether p is not past q in either component.
func (p Point) AtOrBefore(q Point) bool {
	return p.UserBranches <= q.UserBranches && p.KernelInsns <= q.KernelInsns
}

func (p Point) String() string {
	return fmt.Sprintf("u%d+k%d", p.UserBranches, p.KernelInsns)
}

var (
	// ErrInterrupted is KVM_RUN returning EINTR: a signal (a kick, the
	// runtime's preemption, or an armed overflow) or immediate_exit.
	// Read the progress to tell an overflow from a kick.
	ErrInterrupted = errors.New("kvm run interrupted")
	// ErrCounterLost means the pinned progress counter lost its PMU slot
	// (another pinned user took the hardware counters): counts after that
	// are not exact, the recording cannot go on.
	ErrCounterLost = errors.New("progress counter lost its PMU slot")
)

// statInsnEmulation is the per-vCPU KVM statistic that counts emulated
// guest instructions (arch/x86/kvm/x86.c, x86_decode_emulated_instruction).
const statInsnEmulation = "insn_emulation"

// kvmRunReq is KVM_RUN, _IO(KVMIO, 0x80).
const kvmRunReq = 0xAE<<8 | 0x80

// calibrationRuns is how many empty counted windows NewCounter measures;
// they must all agree for the overhead to be a constant.
const calibrationRuns = 4

// Counter measures one vCPU's guest progress. Create it on the vCPU's OS
// thread (runtime.LockOSThread) and use Run, Enable and Disable only on that
// thread: the perf counter counts that thread only. Read and the overflow
// controls may be used from that thread between runs.
type Counter struct {
	// perfFD is the user-mode retired-conditional-branch counter.
	perfFD int
	// vcpuFD is the vCPU the counter measures (not owned).
	vcpuFD int
	// stats is the vCPU's binary statistics fd (owned).
	stats *Stats
	// tid is the thread the counter and the overflow signal belong to.
	tid int
	// args is countedRun's parameter block; part of the Counter so its
	// address is stable during the run.
	args runArgs
	// overhead is the number of user-mode conditional branches one
	// counted window adds by itself (host code), measured by NewCounter.
	overhead uint64
	// runs counts counted windows (Run calls) since base was taken.
	runs uint64
	// base is the raw reading that corresponds to origin.
	base Point
	// origin is the progress value Read returns at base (see Rebase).
	origin Point
	// sig is the overflow signal configured on perfFD (0 = none yet).
	sig unix.Signal
}

// NewCounter opens the progress counter of the calling thread for vcpuFD
// and calibrates its overhead. It sets the vCPU's KVM signal mask to the
// calling thread's current mask (Run needs KVM_SET_SIGNAL_MASK, see
// runpath_amd64.s), so the caller should not set another one.
func NewCounter(vcpuFD int) (*Counter, error) {
	return newCounterWith(vcpuFD, openProgressCounter, true)
}

// newCounterWith builds a Counter on the perf event open returns. Tests on
// hosts without a hardware PMU use it with a software event as a stand-in
// (the window, signal and statistics plumbing is the same; the user counts
// are then meaningless and calibrate is off, a clock is no constant).
func newCounterWith(vcpuFD int, open func() (int, error), calibrate bool) (*Counter, error) {
	pfd, err := open()
	if err != nil {
		return nil, err
	}
	c := &Counter{perfFD: pfd, vcpuFD: vcpuFD, tid: unix.Gettid()}
	if err := c.init(calibrate); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Counter) init(calibrate bool) error {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.vcpuFD), 0xAE<<8|0xce, 0) // KVM_GET_STATS_FD
	if e != 0 {
		return fmt.Errorf("KVM_GET_STATS_FD: %w", e)
	}
	s, err := OpenStats(int(r))
	if err != nil {
		unix.Close(int(r))
		return err
	}
	c.stats = s
	if !s.Has(statInsnEmulation) {
		return fmt.Errorf("vcpu statistic %s: %w", statInsnEmulation, unix.ENOENT)
	}
	mask, err := threadSignalMask()
	if err != nil {
		return err
	}
	if err := kvmsys.SetSignalMask(c.vcpuFD, mask); err != nil {
		return err
	}
	c.args = runArgs{perfFD: uintptr(c.perfFD), blockAll: ^uint64(0)}
	if calibrate {
		if err := c.calibrate(); err != nil {
			return err
		}
	}
	return c.Rebase(Point{})
}

// calibrate measures the user-mode branches of a counted window in which
// the ioctl is issued on fd -1: it fails with EBADF in the kernel, which is
// not counted, so the count is exactly the host user code of the window.
// The assembly window has no conditional branch, so this should be 0; it
// is measured anyway so that Read stays exact if a CPU counts something at
// the mode switches, and so that a non-constant window is caught at start.
// (Not yet measured on a host with a PMU: doc.go.)
func (c *Counter) calibrate() error {
	var prev uint64
	for i := 0; i < calibrationRuns; i++ {
		before, err := readCount(c.perfFD)
		if err != nil {
			return err
		}
		c.args.vcpuFD, c.args.req, c.args.arg = ^uintptr(0), kvmRunReq, 0
		runCounted(&c.args)
		if err := c.windowErr(); err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
		after, err := readCount(c.perfFD)
		if err != nil {
			return err
		}
		d := after - before
		if i > 0 && d != prev {
			return fmt.Errorf("calibrate: counted window adds %d then %d user branches: not a constant", prev, d)
		}
		prev = d
	}
	c.overhead = prev
	return nil
}

// RunOverhead is the number of user-mode conditional branches one Run adds
// by itself (host user code between enabling and disabling the counter),
// measured by NewCounter; Read subtracts it once per Run. 0 by
// construction (no conditional branch in the window); see doc.go for what
// has been measured.
func (c *Counter) RunOverhead() uint64 { return c.overhead }

// windowErr checks the parts of the counted window other than the ioctl.
func (c *Counter) windowErr() error {
	if e := rawErrno(c.args.maskRet); e != 0 {
		return fmt.Errorf("block signals: %w", e)
	}
	if e := rawErrno(c.args.enableRet); e != 0 {
		return fmt.Errorf("PERF_EVENT_IOC_ENABLE: %w", e)
	}
	if e := rawErrno(c.args.disableRet); e != 0 {
		return fmt.Errorf("PERF_EVENT_IOC_DISABLE: %w", e)
	}
	if e := rawErrno(c.args.waitRet); e != 0 && e != unix.EAGAIN {
		return fmt.Errorf("consume overflow signal: %w", e)
	}
	return nil
}

// Run enters the guest once (KVM_RUN) with the progress counter enabled
// around it on a fixed, branch-free path (runpath_amd64.s). It returns nil
// on a guest exit (read kvm_run.exit_reason), ErrInterrupted on EINTR, or
// the KVM_RUN error. Preconditions: called on the counter's thread.
func (c *Counter) Run() error {
	c.args.vcpuFD, c.args.req, c.args.arg = uintptr(c.vcpuFD), kvmRunReq, 0
	runCounted(&c.args)
	c.runs++
	if err := c.windowErr(); err != nil {
		return fmt.Errorf("counted KVM_RUN: %w", err)
	}
	switch e := rawErrno(c.args.runRet); e {
	case 0:
		return nil
	case unix.EINTR:
		return ErrInterrupted
	default:
		return fmt.Errorf("KVM_RUN: %w", e)
	}
}

// Enable starts the counter with a single raw ioctl, for a VMM that issues
// KVM_RUN itself. Everything the thread executes in user mode until Disable
// is counted, including Go runtime code (entersyscall/exitsyscall around a
// blocking KVM_RUN) and signal handlers, whose branch counts vary: progress
// measured this way is not exact, and Read does not correct it
// (TestEnableDisableOverheadMeasured reports the spread). Prefer Run.
func (c *Counter) Enable() error {
	if _, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(c.perfFD), unix.PERF_EVENT_IOC_ENABLE, 0); e != 0 {
		return fmt.Errorf("PERF_EVENT_IOC_ENABLE: %w", e)
	}
	return nil
}

// Disable stops the counter (see Enable).
func (c *Counter) Disable() error {
	if _, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(c.perfFD), unix.PERF_EVENT_IOC_DISABLE, 0); e != 0 {
		return fmt.Errorf("PERF_EVENT_IOC_DISABLE: %w", e)
	}
	return nil
}

// readRaw returns the uncorrected counts.
func (c *Counter) readRaw() (Point, error) {
	u, err := readCount(c.perfFD)
	if err != nil {
		return Point{}, err
	}
	k, err := c.stats.Read(statInsnEmulation)
	if err != nil {
		return Point{}, err
	}
	return Point{UserBranches: u, KernelInsns: k}, nil
}

// Read returns the vCPU's progress: the origin set by Rebase (zero after
// NewCounter) plus what the guest executed since, with RunOverhead taken
// off once per Run. Call it between runs.
func (c *Counter) Read() (Point, error) {
	raw, err := c.readRaw()
	if err != nil {
		return Point{}, err
	}
	d := raw.Sub(c.base)
	d.UserBranches -= c.runs * c.overhead
	return c.origin.Add(d), nil
}

// Rebase makes Read return at now: for a vCPU restored from a checkpoint
// taken at progress at, or to count from zero.
func (c *Counter) Rebase(at Point) error {
	raw, err := c.readRaw()
	if err != nil {
		return err
	}
	c.base, c.origin, c.runs = raw, at, 0
	return nil
}

// ArmOverflow makes the counter signal the vCPU thread with sig after
// branches more guest user-mode conditional branches (counted from the next
// Run), which interrupts KVM_RUN: Run returns ErrInterrupted with the guest
// somewhat past the requested count (the skid, doc.go). The overflow then
// re-arms with the same period until DisarmOverflow or another ArmOverflow.
// Run dequeues sig itself, so it never reaches a Go handler; use a signal
// that nothing else in the process needs (SIGIO, or a real-time signal from
// 35 up; not 32-34, which the Go runtime and libc reserve).
func (c *Counter) ArmOverflow(branches uint64, sig unix.Signal) error {
	if branches == 0 || branches >= idlePeriod {
		return fmt.Errorf("arm overflow after %d branches: %w", branches, unix.EINVAL)
	}
	if sig != c.sig {
		if err := setOverflowSignal(c.perfFD, c.tid, sig); err != nil {
			return err
		}
		c.sig = sig
		c.args.consume = 1 << (uint(sig) - 1)
	}
	return setPeriod(c.perfFD, branches)
}

// DisarmOverflow returns the counter to the idle period. A signal already
// queued is still dequeued by the next Run.
func (c *Counter) DisarmOverflow() error {
	return setPeriod(c.perfFD, idlePeriod)
}

// Close releases the perf counter and the statistics fd (not the vCPU).
func (c *Counter) Close() error {
	var err error
	if c.stats != nil {
		err = c.stats.Close()
		c.stats = nil
	}
	if c.perfFD >= 0 {
		if e := unix.Close(c.perfFD); e != nil && err == nil {
			err = e
		}
		c.perfFD = -1
	}
	return err
}
