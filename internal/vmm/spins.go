package vmm

// The guest kernel's spin functions, for the serialized recorder's spin
// checks (internal/session, det_spin.go).
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
)

// spinFunctions are the guest kernel functions in which a vCPU waits for
// another (Linux 6.1): the qspinlock slow path, the IPI acknowledgement
// wait of smp_call_function_many_cond (csd_lock_wait, inlined), and the
// optimistic spinning of rwsem_down_write_slowpath.
var spinFunctions = []string{"queued_spin_lock_slowpath", "smp_call_function_many_cond", "rwsem_down_write_slowpath"}

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
