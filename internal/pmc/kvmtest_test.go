package pmc

// A minimal KVM machine for the package's tests: one vCPU, 2 MiB of guest
// memory identity-mapped by a single 2 MiB page, entered directly in 64-bit
// long mode through KVM_SET_SREGS (no firmware, no GDT in memory: KVM takes
// the segment descriptors from the sregs cache), as shared/probes/ do.

import (
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Guest physical layout.
const (
	guestMemSize = 2 << 20
	pml4Addr     = 0x2000
	pdptAddr     = 0x3000
	pdAddr       = 0x4000
	stackTop     = 0x8000
	codeAddr     = 0x10000
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
	exitIO       = 2
	exitHLT      = 5
	exitShutdown = 8
	exitIntr     = 10
)

// requireKVM skips the test when /dev/kvm cannot be used.
func requireKVM(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("KVM tests need /dev/kvm: %v", err)
	}
	f.Close()
}

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

// testVM is a one-vCPU VM.
type testVM struct {
	kvmFD, vmFD, vcpuFD int
	mem                 []byte // guest physical memory at GPA 0
	run                 []byte // the vCPU's struct kvm_run
}

// newTestVM builds the VM with code at codeAddr, entered at CPL3 if user,
// else CPL0. The caller must hold its OS thread (lockThread) before making
// a Counter for it.
func newTestVM(t testing.TB, user bool, code []byte) *testVM {
	t.Helper()
	requireKVM(t)
	v := &testVM{kvmFD: -1, vmFD: -1, vcpuFD: -1}
	t.Cleanup(v.close)
	var err error
	if v.kvmFD, err = unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		t.Fatalf("open /dev/kvm: %v", err)
	}
	vm, err := kvm.CreateVM(uintptr(v.kvmFD))
	if err != nil {
		t.Fatalf("KVM_CREATE_VM: %v", err)
	}
	v.vmFD = int(vm)
	if v.mem, err = unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		t.Fatalf("mmap guest memory: %v", err)
	}
	region := kvm.UserspaceMemoryRegion{MemorySize: guestMemSize, UserspaceAddr: uint64(uintptr(unsafe.Pointer(&v.mem[0])))}
	if err := kvm.SetUserMemoryRegion(vm, &region); err != nil {
		t.Fatalf("KVM_SET_USER_MEMORY_REGION: %v", err)
	}
	// Page tables: PML4[0] -> PDPT[0] -> PD[0] = 2 MiB page at 0
	// (present, writable, user if the guest runs at CPL3; PS on the PD).
	var us uint64
	if user {
		us = 4
	}
	binary.LittleEndian.PutUint64(v.mem[pml4Addr:], pdptAddr|3|us)
	binary.LittleEndian.PutUint64(v.mem[pdptAddr:], pdAddr|3|us)
	binary.LittleEndian.PutUint64(v.mem[pdAddr:], 0x80|3|us)
	copy(v.mem[codeAddr:], code)

	cpu, err := kvm.CreateVCPU(vm, 0)
	if err != nil {
		t.Fatalf("KVM_CREATE_VCPU: %v", err)
	}
	v.vcpuFD = int(cpu)
	size, err := kvm.GetVCPUMMmapSize(uintptr(v.kvmFD))
	if err != nil {
		t.Fatalf("KVM_GET_VCPU_MMAP_SIZE: %v", err)
	}
	if v.run, err = unix.Mmap(v.vcpuFD, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.Fatalf("mmap kvm_run: %v", err)
	}

	s, err := kvm.GetSregs(cpu)
	if err != nil {
		t.Fatalf("KVM_GET_SREGS: %v", err)
	}
	s.CR3 = pml4Addr
	s.CR4 = 1 << 5     // PAE
	s.CR0 = 0x80050033 // PG, AM, WP, NE, ET, MP, PE
	s.EFER = 0x500     // LMA, LME
	var rpl uint8
	if user {
		rpl = 3
	}
	s.CS = kvm.Segment{Limit: 0xffffffff, Selector: 1<<3 | uint16(rpl), Typ: 11, Present: 1, DPL: rpl, S: 1, L: 1, G: 1}
	data := kvm.Segment{Limit: 0xffffffff, Selector: 2<<3 | uint16(rpl), Typ: 3, Present: 1, DPL: rpl, DB: 1, S: 1, G: 1}
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	if err := kvm.SetSregs(cpu, s); err != nil {
		t.Fatalf("KVM_SET_SREGS: %v", err)
	}
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
	v.setImmediateExit(true)
	if err := v.runRaw(); err != unix.EINTR {
		t.Fatalf("KVM_RUN with immediate_exit: %v, want EINTR", err)
	}
	v.setImmediateExit(false)
	if err := kvm.SetRegs(uintptr(v.vcpuFD), &kvm.Regs{RIP: codeAddr, RFLAGS: 0x3002, RSP: stackTop, RCX: n}); err != nil {
		t.Fatalf("KVM_SET_REGS: %v", err)
	}
}

func (v *testVM) regs(t testing.TB) *kvm.Regs {
	t.Helper()
	r, err := kvm.GetRegs(uintptr(v.vcpuFD))
	if err != nil {
		t.Fatalf("KVM_GET_REGS: %v", err)
	}
	return r
}

func (v *testVM) exitReason() uint32 {
	return binary.LittleEndian.Uint32(v.run[exitReasonOffset:])
}

// setImmediateExit sets kvm_run.immediate_exit (byte 1): KVM_RUN then
// returns EINTR without entering the guest.
func (v *testVM) setImmediateExit(on bool) {
	if on {
		v.run[1] = 1
	} else {
		v.run[1] = 0
	}
}

func (v *testVM) close() {
	if v.run != nil {
		unix.Munmap(v.run)
	}
	for _, fd := range []int{v.vcpuFD, v.vmFD, v.kvmFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if v.mem != nil {
		unix.Munmap(v.mem)
	}
}

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
func (v *testVM) runRaw() error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.vcpuFD), kvmRunReq, 0); e != 0 {
		return e
	}
	return nil
}

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
