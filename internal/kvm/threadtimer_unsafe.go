package kvm

// A POSIX timer that interrupts one vCPU's KVM_RUN: replay's fast-forward
// (internal/session, det_ff.go) must stop the guest after a bounded stretch of execution.
//
//   - A Go timer goroutine calling tgkill can be delayed by the Go
//     scheduler while the vCPU thread keeps running, and every late
//     microsecond is ~1.4 more emulated instructions (a risk of passing
//     the target). A kernel timer with SIGEV_THREAD_ID signals from the
//     timer interrupt itself.
//   - A signal that arrives between arming the timer and entering KVM_RUN
//     would be handled in userspace and lost, and KVM_RUN would then run
//     until the guest exits: a guest kernel spinning on a vCPU that replay
//     is not running never does (a replay hung that way under load). So
//     the timer's signal (SIGUSR2) is blocked on the vCPU thread and
//     unblocked only inside KVM_RUN through KVM_SET_SIGNAL_MASK (what the
//     ioctl exists for; QEMU's SIG_IPI works the same way): a signal sent
//     early stays pending and makes the next KVM_RUN return at once. After
//     each run the pending signal is consumed with sigtimedwait.
//
// golang.org/x/sys/unix has no timer_create or KVM_SET_SIGNAL_MASK
// wrapper (nor does gokvm), hence the raw syscalls. Go's runtime catches
// SIGUSR2 and ignores it when nothing called signal.Notify for it.

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sigevThreadID is SIGEV_THREAD_ID (include/uapi/asm-generic/siginfo.h).
const sigevThreadID = 4

// kvmSetSignalMask is KVM_SET_SIGNAL_MASK, _IOW(KVMIO, 0x8b, struct
// kvm_signal_mask): the struct's fixed part is one __u32.
const kvmSetSignalMask = 0x4004ae8b

// SetSignalMask sets the signal mask a vCPU's KVM_RUN runs the guest with
// (KVM_SET_SIGNAL_MASK, Documentation/virt/kvm/api.rst 4.38): mask's bit
// n-1 blocks signal n. struct kvm_signal_mask is { __u32 len; __u8
// sigset[]; }, so the 8-byte sigset starts at byte 4, unaligned: a Go
// struct { uint32; uint64 } would put it at byte 8 and hand KVM 4 bytes
// of padding as signals 1-32, which Go need not zero (measured: a
// recording hung for good when that garbage blocked SIGURG, the kick, so
// KVM_RUN never returned; /proc showed SigBlk 000000003d616c61 on the
// vCPU thread inside KVM_RUN).
func SetSignalMask(vcpuFD int, mask uint64) error {
	m := signalMaskArg(mask)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vcpuFD), kvmSetSignalMask, uintptr(unsafe.Pointer(&m[0]))); errno != 0 {
		return fmt.Errorf("KVM_SET_SIGNAL_MASK: %w", errno)
	}
	return nil
}

// timerSignal is the signal the timer sends.
const timerSignal = unix.SIGUSR2

// sigevent is struct sigevent on amd64: value, signo, notify, then a
// 48-byte union whose first int is the target thread id.
type sigevent struct {
	value  uint64
	signo  int32
	notify int32
	tid    int32
	_      [44]byte
}

// ThreadTimer is a one-shot CLOCK_MONOTONIC timer that interrupts one
// vCPU thread's KVM_RUN.
type ThreadTimer struct {
	// id is the kernel's timer id.
	id int32
}

// NewThreadTimer blocks timerSignal on the calling thread, which must be
// the vCPU's locked thread (tid), lets it through during the vCPU's
// KVM_RUN, and creates a timer that sends it to that thread.
func NewThreadTimer(vcpuFD, tid int) (*ThreadTimer, error) {
	var block, old unix.Sigset_t
	block.Val[0] = 1 << (uint(timerSignal) - 1)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &block, &old); err != nil {
		return nil, fmt.Errorf("block SIGUSR2: %w", err)
	}
	// The mask in force during KVM_RUN: the thread's own mask without
	// timerSignal.
	if err := SetSignalMask(vcpuFD, old.Val[0]&^block.Val[0]); err != nil {
		return nil, err
	}
	ev := sigevent{signo: int32(timerSignal), notify: sigevThreadID, tid: int32(tid)}
	var id int32
	_, _, errno := unix.Syscall(unix.SYS_TIMER_CREATE, uintptr(unix.CLOCK_MONOTONIC), uintptr(unsafe.Pointer(&ev)), uintptr(unsafe.Pointer(&id)))
	if errno != 0 {
		return nil, fmt.Errorf("timer_create: %w", errno)
	}
	return &ThreadTimer{id: id}, nil
}

// signalMaskArg is KVM_SET_SIGNAL_MASK's argument for mask: len 8, then
// the sigset from byte 4.
func signalMaskArg(mask uint64) [12]byte {
	var m [12]byte
	binary.LittleEndian.PutUint32(m[0:4], 8)
	binary.LittleEndian.PutUint64(m[4:12], mask)
	return m
}

// Arm makes the timer fire once after d; d == 0 disarms it.
func (t *ThreadTimer) Arm(d time.Duration) error {
	spec := [4]int64{0, 0, int64(d / time.Second), int64(d % time.Second)} // interval, value
	_, _, errno := unix.Syscall6(unix.SYS_TIMER_SETTIME, uintptr(t.id), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("timer_settime: %w", errno)
	}
	return nil
}

// Consume discards a pending timer signal on the calling thread (it is
// blocked there, so it stays pending after KVM_RUN returns).
func (t *ThreadTimer) Consume() {
	set := uint64(1) << (uint(timerSignal) - 1)
	var zero unix.Timespec
	unix.Syscall6(unix.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&set)), 0, uintptr(unsafe.Pointer(&zero)), 8, 0, 0)
}

// Close deletes the timer.
func (t *ThreadTimer) Close() {
	unix.Syscall(unix.SYS_TIMER_DELETE, uintptr(t.id), 0, 0)
}
