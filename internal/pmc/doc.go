// Package pmc counts guest progress per vCPU.
//
// On PVM hosts (shared/PLATFORM.md) guest user-mode (CPL3) code runs
// natively and is counted exactly by a perf counter of retired conditional
// branches (AMD raw event 0xd1, rr's counter on Zen) restricted to user
// mode on the vCPU thread; guest kernel (CPL0) code is executed by KVM's
// instruction emulator and counted exactly by the vCPU's `insn_emulation`
// binary statistic (KVM_GET_STATS_FD). Their pair is the progress value.
// On VMX/SVM hosts a single counter with exclude_host=1 is used instead.
//
// This file set provides the host probes `samsara probe` reports, the
// choice of progress backend (backend.go: PVM's kernel count, a PMU's
// guest branch count, or none) and the PMU backend's landing on a
// recorded point (land.go, rr's method: overflow a skid margin early,
// then breakpoint passes told apart by registers). The recorders use the
// PVM backend and, on hardware virtualization, none; Land is tested on
// instruction traces recorded by `samsara trace`, since no machine here
// has a PMU.
//
// # API
//
// A Counter belongs to one vCPU and is created on that vCPU's locked OS
// thread (NewCounter). Run replaces the VMM's KVM_RUN; Read returns the
// Point {UserBranches, KernelInsns}; Rebase sets the value Read returns now
// (checkpoints); ArmOverflow/DisarmOverflow interrupt a guest after N more
// user branches; StopAt lands a vCPU exactly on a kernel-mode point.
// Enable/Disable exist for a VMM that issues KVM_RUN itself, but are not
// exact (below).
//
// # The counted window
//
// Under PVM the counter cannot tell guest user code from host user code
// (exclude_host is not honoured for user mode), so everything the vCPU
// thread runs in user mode while the counter is enabled is progress. Run
// therefore enables the counter, issues KVM_RUN and disables the counter in
// one assembly function (runpath_amd64.s) with no conditional branch
// between the enable and the disable, and:
//
//   - blocks every signal in the thread mask around that window, so no
//     signal handler (host user code) runs while counting; KVM_RUN gets the
//     thread's normal mask through KVM_SET_SIGNAL_MASK, so kicks and the
//     overflow signal still interrupt the guest and are handled after the
//     window (the overflow signal is dequeued by rt_sigtimedwait, so it
//     never reaches a Go handler);
//   - calls the runtime's entersyscall/exitsyscall around the whole
//     function, as syscall.Syscall does, so a long KVM_RUN releases its P
//     and does not hold up a GC stop-the-world; their branches fall outside
//     the window.
//
// NewCounter measures the window's own cost (RunOverhead) by running it
// four times with the ioctl aimed at fd -1 (EBADF inside the kernel, which
// is not counted) and insists that all four agree; Read subtracts it once
// per Run. By construction it is 0. Enable + the VMM's unix.Syscall
// (KVM_RUN) + Disable instead counts entersyscall/exitsyscall, whose path
// depends on scheduler state, and any signal handler that runs on the way
// out; TestEnableDisableOverheadMeasured reports its spread where there is
// a PMU.
//
// The counter is pinned, so it is never multiplexed: if it loses its PMU
// slot, reads fail with ErrCounterLost instead of returning short counts.
//
// # Measurements (how and what)
//
// Measured by this package's tests (go test -v ./internal/pmc) on the
// project's development VM: 2 vCPUs, AMD EPYC, Linux 6.18.44 (Firecracker
// guest), kvm + kvm_pvm, with a kernel build running alongside (load 3 on
// 2 cores), so the times vary by up to 2x between runs.
//
// No hardware PMU on this machine. The kernel logs "Performance Events:
// PMU not available due to virtualization, using software events only",
// /proc/cpuinfo has no perfctr_core, /sys/bus/event_source/devices has no
// "cpu" PMU, and perf_event_open of raw 0xd1 (or any hardware event) fails
// with ENOENT. So guest user progress cannot be counted here at all, and
// the following were NOT measured here: RunOverhead, exact user-branch
// counts, the hardware overflow skid, the Enable/Disable spread. The tests
// that need them (TestRunOverheadIsSubtracted, TestOverflowSkid,
// TestEnableDisableOverheadMeasured, and the count checks in
// TestUserBranchesExact and TestKickInterruptsRun) skip or check only the
// guest side. PLATFORM.md's perf figures could not be reproduced here.
// Everything else below runs on a stand-in software perf event with the
// same window, signal and statistics plumbing.
//
// insn_emulation is exact at CPL0 (TestKernelInsnsExact): the loop
// "dec rcx; jnz" of n iterations plus HLT reads 2n+1 for n = 1, 10, 5000,
// also across 200 runs with garbage collections running on other threads
// (TestRunDuringGC). A CPL3 "out" (IOPL=3) is emulated and adds 1.
//
// KVM_GUESTDBG_SINGLESTEP works at CPL0: one KVM_EXIT_DEBUG per emulated
// instruction; StopAt lands exactly after 0, 1, 2, 3, 777, 1000, 1401, 2000
// instructions and the registers agree (TestStopAtKernel). At CPL3 it does
// not (TestSingleStepUserModeMeasured): KVM_RUN returned KVM_EXIT_SHUTDOWN
// after one guest instruction (rip 0x10003, rcx 999: the dec ran), i.e. the
// #DB went to the guest, which has no IDT: triple fault. Same as PLATFORM.md.
//
// Single-stepping a HLT at CPL0 gives KVM_EXIT_DEBUG, not KVM_EXIT_HLT, and
// the vCPU goes on with the next instruction: the halt is lost. StopAt
// checks the next instruction (KVM_TRANSLATE + guest memory) and runs a
// HLT unstepped.
//
// A hardware execute breakpoint (KVM_GUESTDBG_USE_HW_BP, DR0, DR7=1) is
// honoured at CPL0 by the emulator (TestHardwareBreakpointKernelMeasured):
// on the loop's jnz it hit at 1, 3, 5, 7, 9 instructions, i.e. before the
// instruction executes and before it is counted. Setting RFLAGS.RF does not
// suppress the next hit (the hit repeats at the same count), so StopAt
// steps over a hit with one single-step.
//
// Speeds at CPL0 (TestKernelStepRateMeasured, 3 runs): free emulation
// 1.09-1.40 M instructions/s; StopAt single-stepping 20-29 k steps/s
// (35-50 µs per step, including its checks); 38,000 instructions to a
// breakpoint in 25-41 ms (emulation speed). Hence stepThreshold.
//
// Overflow signal. With task-clock (nanoseconds of thread time) standing
// in for the branch counter (TestOverflowSignalInterruptsRun), an armed
// overflow (F_SETOWN_EX F_OWNER_TID, F_SETSIG, O_ASYNC, then
// PERF_EVENT_IOC_PERIOD) interrupts a CPL3 guest loop: Run returns
// ErrInterrupted and the signal is dequeued inside the window. The guest
// ran 36-98 µs past the overflow (medians 42-63 µs over 3 runs of 6); a
// plain host thread polling for the same overflow saw it 25-69 µs late
// (medians 27-50 µs, TestClockOverflowLatencyWithoutKVM). So most of that
// is the software clock's own lateness in this nested VM, and leaving the
// guest adds roughly 5-15 µs (difference of the medians). The loop retires 3.1-3.8 conditional
// branches per ns, so 40 µs is ~140,000 branches and 10 µs ~35,000. The
// skid of a real 0xd1 overflow (PMU interrupt instead of an hrtimer) must
// be measured with TestOverflowSkid on a host with a PMU; it checks every
// interrupted count against the loop's registers as well.
//
// # What this means for stopping exactly in guest user mode
//
// Under PVM nothing in KVM stops a CPL3 vCPU at an exact instruction
// (single-step and breakpoints go to the guest or are ignored), and the
// overflow signal lands tens of thousands of branches late at best. So:
//
//   - Injecting asynchronous events only at exits and in kernel code is
//     exact and cheap today (StopAt: breakpoint runs at emulation speed,
//     then single-steps). Its cost: a vCPU spinning in user mode takes its
//     interrupt only at its next kernel entry; a user loop that never enters
//     the kernel is never preempted (a user spin-wait on another thread of
//     the same vCPU would hang). It is also the only option on a host
//     without a PMU, like this one, where user progress cannot be counted.
//   - Finishing in an emulator: arm the overflow a margin (above the
//     largest skid measured, with headroom) before the target, then run
//     the remaining user code in a userspace x86 emulator until count and
//     RIP match. With ~10^5 branches of margin that is a few milliseconds
//     of emulation per stop, plus copying state back and forth.
//   - Page-fault stops (DESIGN.md "Progress counting"): stop at the first
//     touch of a page outside the chunk's set after count N. Needs only the
//     exact count and PROT_NONE/userfaultfd stops, and tolerates any skid
//     because N is logged from the record run.
//
// All but the first need the hardware counter.
package pmc
