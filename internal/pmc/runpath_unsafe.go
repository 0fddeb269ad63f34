// x86-64 only, like the rest of samsara: countedRun is in runpath_amd64.s.

package pmc

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runArgs is the in/out block of countedRun (runpath_amd64.s). The
// assembly addresses fields by offset; checkRunArgsLayout keeps the two in
// step. It lives inside Counter (heap) so its address is stable while the
// goroutine is in the syscall state.
type runArgs struct {
	perfFD     uintptr  // 0: the progress counter
	vcpuFD     uintptr  // 8: the vCPU, or -1 for calibration
	req        uintptr  // 16: ioctl request issued between enable and disable (KVM_RUN)
	arg        uintptr  // 24: its argument
	blockAll   uint64   // 32: thread mask while the counter is enabled (all signals)
	saved      uint64   // 40: the thread's mask before, restored at the end
	consume    uint64   // 48: signals dequeued after the run (the overflow signal)
	zero       [2]int64 // 56: struct timespec{0, 0}: do not wait
	maskRet    uintptr  // 72: raw result of the first rt_sigprocmask
	enableRet  uintptr  // 80: raw result of PERF_EVENT_IOC_ENABLE
	runRet     uintptr  // 88: raw result of the ioctl (KVM_RUN)
	disableRet uintptr  // 96: raw result of PERF_EVENT_IOC_DISABLE
	waitRet    uintptr  // 104: raw result of rt_sigtimedwait (EAGAIN or a signal number)
}

func init() {
	if err := checkRunArgsLayout(); err != nil {
		panic(err) // a build with a stale assembly file; nothing can run correctly
	}
}

func checkRunArgsLayout() error {
	var a runArgs
	want := []struct {
		name string
		got  uintptr
		off  uintptr
	}{
		{"perfFD", unsafe.Offsetof(a.perfFD), 0}, {"vcpuFD", unsafe.Offsetof(a.vcpuFD), 8},
		{"req", unsafe.Offsetof(a.req), 16}, {"arg", unsafe.Offsetof(a.arg), 24},
		{"blockAll", unsafe.Offsetof(a.blockAll), 32}, {"saved", unsafe.Offsetof(a.saved), 40},
		{"consume", unsafe.Offsetof(a.consume), 48}, {"zero", unsafe.Offsetof(a.zero), 56},
		{"maskRet", unsafe.Offsetof(a.maskRet), 72}, {"enableRet", unsafe.Offsetof(a.enableRet), 80},
		{"runRet", unsafe.Offsetof(a.runRet), 88}, {"disableRet", unsafe.Offsetof(a.disableRet), 96},
		{"waitRet", unsafe.Offsetof(a.waitRet), 104},
	}
	for _, w := range want {
		if w.got != w.off {
			return fmt.Errorf("pmc: runArgs.%s at offset %d, runpath_amd64.s expects %d", w.name, w.got, w.off)
		}
	}
	return nil
}

// rawErrno decodes a raw syscall return value (-errno on failure).
func rawErrno(r uintptr) unix.Errno {
	if r > ^uintptr(4095) {
		return unix.Errno(-int64(r))
	}
	return 0
}

// The runtime's syscall bookkeeping, as syscall.Syscall uses it: between
// the two the goroutine is in the syscall state, so a long KVM_RUN neither
// holds its P nor delays a garbage-collection stop-the-world (the runtime
// treats the goroutine as stopped). Both are exported by the runtime for
// this use (go.dev/issue/67401, "hall of shame": gVisor calls them).
//
//go:linkname entersyscall runtime.entersyscall
func entersyscall()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()

// countedRun is the branch-free counted window (runpath_amd64.s).
//
//go:noescape
func countedRun(p *runArgs)

// runCounted runs countedRun as a blocking system call. It must be nosplit,
// like syscall.Syscall: entersyscall records this frame's SP and PC, and
// the stack must not move before exitsyscall.
//
//go:nosplit
func runCounted(p *runArgs) {
	entersyscall()
	countedRun(p)
	exitsyscall()
}

// threadSignalMask returns the calling thread's signal mask.
func threadSignalMask() (uint64, error) {
	var old uint64
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_BLOCK, 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("rt_sigprocmask: %w", e)
	}
	return old, nil
}

// fOwnerEx is struct f_owner_ex.
type fOwnerEx struct {
	typ int32
	pid int32
}

// fOwnerTID is F_OWNER_TID: deliver the fasync signal to one thread.
const fOwnerTID = 0

// setOverflowSignal makes the counter fd send sig to thread tid on every
// overflow (fcntl F_SETOWN_EX F_OWNER_TID, F_SETSIG, O_ASYNC; see
// perf_event_open(2), "Signal overflow"). F_SETSIG also makes the kernel
// queue a siginfo, so the signal carries si_fd.
func setOverflowSignal(fd, tid int, sig unix.Signal) error {
	own := fOwnerEx{typ: fOwnerTID, pid: int32(tid)}
	if _, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETOWN_EX, uintptr(unsafe.Pointer(&own))); e != 0 {
		return fmt.Errorf("fcntl F_SETOWN_EX: %w", e)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETSIG, int(sig)); err != nil {
		return fmt.Errorf("fcntl F_SETSIG: %w", err)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("fcntl F_GETFL: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_ASYNC); err != nil {
		return fmt.Errorf("fcntl F_SETFL O_ASYNC: %w", err)
	}
	return nil
}

// setPeriod sets the counter's sample period (PERF_EVENT_IOC_PERIOD). The
// kernel also resets the period's progress, so the next overflow comes
// after period more events counted from now.
func setPeriod(fd int, period uint64) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_PERIOD, uintptr(unsafe.Pointer(&period))); e != 0 {
		return fmt.Errorf("PERF_EVENT_IOC_PERIOD %d: %w", period, e)
	}
	return nil
}

// readCount reads a counter and insists on the full 8 bytes: a pinned
// event that lost its PMU slot reads as end of file (perf_event_open(2),
// "pinned"), which must not pass as a count.
func readCount(fd int) (uint64, error) {
	var v uint64
	b := unsafe.Slice((*byte)(unsafe.Pointer(&v)), 8)
	n, err := unix.Read(fd, b)
	if err != nil {
		return 0, fmt.Errorf("read progress counter: %w", err)
	}
	if n != 8 {
		return 0, fmt.Errorf("read progress counter: %d bytes: %w", n, ErrCounterLost)
	}
	return v, nil
}
