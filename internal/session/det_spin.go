package session

// Spin checks of the serialized recorder (Options.SpinChecks).
//
// One vCPU runs at a time, so a vCPU that waits in the guest kernel for
// another one (a spinlock the other holds, an IPI it has not acknowledged
// yet) spins until the watchdog preempts it. The preemption point then
// lies in the spin loop, and replay reaches it with one breakpoint pass
// per loop iteration: measured in a dedup 2-vCPU replay, 442,199 passes,
// 95% of them in queued_spin_lock_slowpath. So while another vCPU is
// waiting to run, the watchdog kicks every spinCheckAfter, and a vCPU
// found inside one of the kernel's spin functions (vmm.Machine.Spins) is
// preempted then instead of after preemptAfter: the spin, in the
// recording and in its replay, is about ten times shorter.

import "time"

// spinCheckAfter: how long a chunk runs before the spin checks start
// (and their period). 1 ms is ~1,400 emulated kernel instructions here
// (PLATFORM.md: ~1.4 M/s), a tenth of preemptAfter.
const spinCheckAfter = time.Millisecond

// inSpin reports whether the vCPU's RIP lies in one of the spin
// functions.
func (v *vcpu) inSpin() (bool, error) {
	spins := v.s.m.Spins()
	if len(spins) == 0 {
		return false, nil
	}
	regs, err := v.Regs()
	if err != nil {
		return false, err
	}
	for _, r := range spins {
		if regs.RIP >= r.Start && regs.RIP < r.End {
			return true, nil
		}
	}
	return false, nil
}
