package vmm

// Spin checks of the serialized recorder.
//
// One vCPU runs at a time, so a vCPU that waits in the guest kernel for
// another one (a spinlock the other holds, an IPI it has not acknowledged
// yet) spins until the watchdog preempts it. The preemption point then
// lies in the spin loop, and replay reaches it with one breakpoint pass
// per loop iteration: measured in a dedup 2-vCPU replay, 442,199 passes,
// 95% of them in queued_spin_lock_slowpath. So while another vCPU is
// waiting to run, the watchdog kicks every spinCheckAfter, and a vCPU
// found inside one of spinFunctions is preempted then instead of after
// preemptAfter: the spin, in the recording and in its replay, is about
// ten times shorter.

import (
	"debug/elf"
	"os"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
)

// spinCheckAfter: how long a chunk runs before the spin checks start
// (and their period). 1 ms is ~1,400 emulated kernel instructions here
// (PLATFORM.md: ~1.4 M/s), a tenth of preemptAfter.
const spinCheckAfter = time.Millisecond

// spinFunctions are the guest kernel functions in which a vCPU waits for
// another (Linux 6.1): the qspinlock slow path, the IPI acknowledgement
// wait of smp_call_function_many_cond (csd_lock_wait, inlined), and the
// optimistic spinning of rwsem_down_write_slowpath.
var spinFunctions = []string{"queued_spin_lock_slowpath", "smp_call_function_many_cond", "rwsem_down_write_slowpath"}

// spinChecks (SAMSARA_SPIN_CHECK=0 turns it off, for comparisons).
var spinChecks = os.Getenv("SAMSARA_SPIN_CHECK") != "0"

// KernelRange is a guest kernel function's code, [Start, End).
type KernelRange struct{ Start, End uint64 }

// findSpinRanges finds spinFunctions' ranges in the ELF symbol table
// syms.
func findSpinRanges(syms []elf.Symbol) []KernelRange {
	var out []KernelRange
	for _, s := range syms {
		for _, name := range spinFunctions {
			if s.Name == name && s.Size > 0 && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
				out = append(out, KernelRange{s.Value, s.Value + s.Size})
			}
		}
	}
	return out
}

// inSpin reports whether the vCPU's RIP lies in one of the spin
// functions.
func (v *vcpu) inSpin() (bool, error) {
	if len(v.m.spins) == 0 {
		return false, nil
	}
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return false, err
	}
	for _, r := range v.m.spins {
		if regs.RIP >= r.Start && regs.RIP < r.End {
			return true, nil
		}
	}
	return false, nil
}
