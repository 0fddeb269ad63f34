// Package kvm holds the KVM ioctls that samsara wraps around gokvm's kvm
// package, where gokvm's behaviour is not what samsara needs or it lacks
// the ioctl: KVM_RUN with EINTR surfaced, FPU, XSAVE, MSRs, CPUID, guest
// debug, interrupts, statistics, the kvm_run exit decoders, and the
// per-thread timer that bounds a run. Every use of package unsafe for KVM
// structures is here (ioctl_unsafe.go, threadtimer_unsafe.go); every
// errno reaches the caller. It imports nothing of samsara.
package kvm

import (
	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// createVMTries bounds the EINTR retries of CreateVM: each failed try is
// one signal that arrived during one ioctl, so a hundred in a row means
// something keeps signalling the thread, and the error is returned.
const createVMTries = 100

// CreateVM is KVM_CREATE_VM on an open /dev/kvm, retried when a signal
// interrupts it. The ioctl registers an MMU notifier, whose
// mm_take_all_locks gives up with EINTR on any pending signal; Go's
// preemption signals (SIGURG) made that happen in the emulated SVM host,
// where the ioctl is slow (measured there: "create VM: interrupted system
// call"). gokvm's CreateVM returns that errno as is.
func CreateVM(sysFD int) (int, error) {
	for i := 0; ; i++ {
		vm, err := gokvm.CreateVM(uintptr(sysFD))
		if err == unix.EINTR && i < createVMTries {
			continue
		}
		if err != nil {
			return -1, err
		}
		return int(vm), nil
	}
}
