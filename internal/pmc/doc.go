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
// This file set so far provides the host probes `samsara probe` reports;
// exact stopping at a progress point is built on top of them.
package pmc
