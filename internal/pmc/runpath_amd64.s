// The counted window of Counter.Run, in assembly so that the host user code
// executed while the progress counter is enabled is fixed and contains no
// conditional branch at all: the counter counts conditional branches retired
// in user mode on this thread, which under PVM includes guest CPL3 code and
// any host user code between PERF_EVENT_IOC_ENABLE and
// PERF_EVENT_IOC_DISABLE. Go code in that window (the runtime's
// entersyscall/exitsyscall, errno checks) would add a data-dependent number
// of branches. Results are stored and checked by the Go caller afterwards.

#include "textflag.h"

#define SYS_ioctl 16
#define SYS_rt_sigprocmask 14
#define SYS_rt_sigtimedwait 128
#define SIG_SETMASK 2
#define PERF_EVENT_IOC_ENABLE 0x2400
#define PERF_EVENT_IOC_DISABLE 0x2401

// func countedRun(p *runArgs)
//
// Sequence (every step is a plain syscall, no branches between 2 and 4):
//  1. rt_sigprocmask(SIG_SETMASK, &p.blockAll, &p.saved): no signal handler
//     may run on this thread while the counter is enabled (a handler is host
//     user code and would be counted). KVM_RUN itself still runs with the
//     vCPU's KVM_SET_SIGNAL_MASK mask, so kicks and the overflow signal
//     interrupt the guest; they stay pending until step 6.
//  2. ioctl(perf, ENABLE)
//  3. ioctl(vcpu, req) -- KVM_RUN
//  4. ioctl(perf, DISABLE)
//  5. rt_sigtimedwait(&p.consume, NULL, &p.zero): dequeue the overflow
//     signal, if pending, so no Go handler sees it.
//  6. rt_sigprocmask(SIG_SETMASK, &p.saved, NULL): other pending signals
//     (SIGURG kicks, preemption) are delivered now, uncounted.
TEXT ·countedRun(SB), NOSPLIT, $0-8
	MOVQ p+0(FP), BX

	MOVQ $SYS_rt_sigprocmask, AX
	MOVQ $SIG_SETMASK, DI
	LEAQ 32(BX), SI  // &p.blockAll
	LEAQ 40(BX), DX  // &p.saved
	MOVQ $8, R10
	SYSCALL
	MOVQ AX, 72(BX)  // p.maskRet

	MOVQ $SYS_ioctl, AX
	MOVQ 0(BX), DI   // p.perfFD
	MOVQ $PERF_EVENT_IOC_ENABLE, SI
	MOVQ $0, DX
	SYSCALL
	MOVQ AX, 80(BX)  // p.enableRet

	MOVQ $SYS_ioctl, AX
	MOVQ 8(BX), DI   // p.vcpuFD
	MOVQ 16(BX), SI  // p.req
	MOVQ 24(BX), DX  // p.arg
	SYSCALL
	MOVQ AX, 88(BX)  // p.runRet

	MOVQ $SYS_ioctl, AX
	MOVQ 0(BX), DI
	MOVQ $PERF_EVENT_IOC_DISABLE, SI
	MOVQ $0, DX
	SYSCALL
	MOVQ AX, 96(BX)  // p.disableRet

	MOVQ $SYS_rt_sigtimedwait, AX
	LEAQ 48(BX), DI  // &p.consume
	MOVQ $0, SI
	LEAQ 56(BX), DX  // &p.zero (struct timespec{0, 0})
	MOVQ $8, R10
	SYSCALL
	MOVQ AX, 104(BX) // p.waitRet

	MOVQ $SYS_rt_sigprocmask, AX
	MOVQ $SIG_SETMASK, DI
	LEAQ 40(BX), SI  // &p.saved
	MOVQ $0, DX
	MOVQ $8, R10
	SYSCALL
	RET
