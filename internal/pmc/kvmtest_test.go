package pmc

// The package's tests run on the shared minimal KVM machine of
// internal/kvmtest: one vCPU, 2 MiB of guest memory identity-mapped by a
// single 2 MiB page, entered directly in 64-bit long mode.

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/samsara-vmm/samsara/internal/kvmtest"
	"golang.org/x/sys/unix"
)

// Guest physical layout (the shared test machine's).
const (
	stackTop = kvmtest.StackTop
	codeAddr = kvmtest.CodeAddr
)

// Guest code. The loop is "dec rcx; jnz loop" entered with RCX = n: n
// conditional branches retired, 2n instructions; then one exit instruction.
var (
	// loopThenHLT: at CPL0, HLT exits to userspace (KVM_EXIT_HLT).
	loopThenHLT = []byte{0x48, 0xff, 0xc9, 0x75, 0xfb, 0xf4}
	// loopThenOUT: at CPL3 HLT would fault (#GP, no IDT: triple fault), so
	// the user loop ends with "out 0x80, al", allowed by RFLAGS.IOPL=3
	// (KVM_EXIT_IO).
	loopThenOUT = []byte{0x48, 0xff, 0xc9, 0x75, 0xfb, 0xe6, 0x80}
)

// RIP of the jnz inside the loop, and where the loop falls through.
const (
	loopJNZ  = codeAddr + 3
	loopExit = codeAddr + 5
)

// KVM exit reasons used by the tests.
const (
	exitIO       = kvmtest.ExitIO
	exitHLT      = kvmtest.ExitHLT
	exitShutdown = kvmtest.ExitShutdown
	exitIntr     = kvmtest.ExitIntr
)

// requireKVM skips the test when /dev/kvm cannot be used.
func requireKVM(t testing.TB) { kvmtest.RequireKVM(t) }

// havePMU reports whether the hardware progress counter can be opened.
func havePMU() bool {
	fd, err := openProgressCounter()
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// requirePMU skips the test when the hardware progress counter (raw 0xd1,
// user mode) cannot be opened: no PMU access (perf_event_paranoid), or no
// PMU at all, as in VMs without a virtual PMU (the kernel then logs
// "Performance Events: PMU not available due to virtualization" and
// perf_event_open of a raw event fails with ENOENT).
func requirePMU(t testing.TB) {
	t.Helper()
	fd, err := openProgressCounter()
	if err != nil {
		t.Skipf("needs the hardware counter of retired conditional branches: %v", err)
	}
	unix.Close(fd)
}

// openSoftwareEvent opens a software perf event of the calling thread,
// disabled, as a stand-in for the progress counter on hosts with no PMU.
func openSoftwareEvent(config, period uint64) func() (int, error) {
	return func() (int, error) {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Config: config,
			Sample: period,
			Bits:   unix.PerfBitDisabled,
		}
		return unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	}
}

// testVM is the shared one-vCPU test machine (internal/kvmtest) under
// the names this package's tests use.
type testVM struct {
	*kvmtest.VM
	kvmFD, vmFD, vcpuFD int
	mem                 []byte // guest physical memory at GPA 0
	run                 []byte // the vCPU's struct kvm_run
}

// newTestVM builds the VM with code at codeAddr, entered at CPL3 if user,
// else CPL0. The caller must hold its OS thread (lockThread) before making
// a Counter for it.
func newTestVM(t testing.TB, user bool, code []byte) *testVM {
	t.Helper()
	k := kvmtest.New(t, kvmtest.Config{User: user, Code: code})
	v := &testVM{VM: k, kvmFD: k.KVMFD, vmFD: k.VMFD, vcpuFD: k.VCPUFD, mem: k.Mem, run: k.RunPage}
	v.setLoop(t, 0)
	return v
}

// setLoop points the vCPU at the start of the code with RCX = n.
// RFLAGS: bit 1 is reserved-set; IOPL=3 lets the CPL3 code use OUT.
// A pending I/O exit is completed first (KVM_RUN with immediate_exit):
// completing it later would finish the old OUT and overwrite the new RIP.
// That run is outside any counted window.
func (v *testVM) setLoop(t testing.TB, n uint64) {
	t.Helper()
	v.CompletePendingExit(t)
	if err := kvm.SetRegs(uintptr(v.vcpuFD), &kvm.Regs{RIP: codeAddr, RFLAGS: 0x3002, RSP: stackTop, RCX: n}); err != nil {
		t.Fatalf("KVM_SET_REGS: %v", err)
	}
}

func (v *testVM) regs(t testing.TB) *kvm.Regs { return v.Regs(t) }

func (v *testVM) exitReason() uint32 { return v.ExitReason() }

func (v *testVM) setImmediateExit(on bool) { v.SetImmediateExit(on) }

// lockThread pins the test goroutine to its OS thread for the test: the
// counter counts one thread.
func lockThread(t testing.TB) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

// newCounter makes the Counter for v on the calling (locked) thread: the
// real one when the PMU is there, else one on the software dummy event,
// whose user branches stay 0 (enough for tests of guest kernel progress,
// which comes from insn_emulation alone).
func newCounter(t testing.TB, v *testVM) *Counter {
	t.Helper()
	c, err := NewCounter(v.vcpuFD)
	if err != nil {
		t.Logf("no hardware progress counter (%v): user branches not counted in this test", err)
		c, err = newCounterWith(v.vcpuFD, openSoftwareEvent(unix.PERF_COUNT_SW_DUMMY, 0), false)
	}
	if err != nil {
		t.Fatalf("NewCounter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newPMUCounter makes the real Counter, skipping without a PMU.
func newPMUCounter(t testing.TB, v *testVM) *Counter {
	t.Helper()
	requirePMU(t)
	c, err := NewCounter(v.vcpuFD)
	if err != nil {
		t.Fatalf("NewCounter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// read is c.Read that fails the test on error.
func read(t testing.TB, c *Counter) Point {
	t.Helper()
	p, err := c.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return p
}

// userLoopBranches is the number of jnz the CPL3/CPL0 loop has retired,
// computed from the registers: started with RCX = n0, each iteration
// decrements RCX then retires one jnz; stopped at the jnz means the last
// dec has no jnz yet.
func userLoopBranches(n0 uint64, r *kvm.Regs) uint64 {
	done := n0 - r.RCX
	if r.RIP == loopJNZ {
		done--
	}
	return done
}

// runRaw issues KVM_RUN directly, without a Counter.
func (v *testVM) runRaw() error { return v.Run() }

func sigprocmask(t testing.TB, how int, mask uint64) {
	t.Helper()
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, uintptr(how), uintptr(unsafe.Pointer(&mask)), 0, 8, 0, 0); e != 0 {
		t.Fatalf("rt_sigprocmask: %v", e)
	}
}

// sigPending reports whether sig is pending for the thread.
func sigPending(sig unix.Signal) bool {
	var set uint64
	unix.RawSyscall(unix.SYS_RT_SIGPENDING, uintptr(unsafe.Pointer(&set)), 8, 0)
	return set&(1<<(sig-1)) != 0
}

// consumeSignal dequeues a pending, blocked sig.
func consumeSignal(t testing.TB, sig unix.Signal) {
	t.Helper()
	set := uint64(1) << (sig - 1)
	var zero [2]int64
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&set)), 0, uintptr(unsafe.Pointer(&zero)), 8, 0, 0); e != 0 {
		t.Fatalf("rt_sigtimedwait: %v", e)
	}
}
