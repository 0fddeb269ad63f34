package main

// svmSkips lists, in one place, the tests that the host VM does not run,
// keyed "package-folder.TestName" (or ".TestName/subtest_name"), with the
// reason. The only accepted reason is that record/replay is not yet
// deterministic on hardware virtualization without a PMU (issue 11: on SVM
// guest kernel code runs natively, so the PVM-era preemption points and
// page-table assumptions do not hold there). `hostvm test` passes these
// to go test's -skip and prints this list in its summary. Tests that need
// PVM itself skip on their own (kvmtest.RequirePVM) and the summary lists
// them with their message.
var svmSkips = map[string]string{
	// Measured in the host (2 vCPUs, each command bounded at 90 s):
	// serialized recording of a program whose two threads run on both
	// vCPUs did not finish (race 20000, threads2 1000, blackscholes 2
	// tiny), and timers (2 vCPUs) finished in 2 s once and hung (3 min)
	// the next time; 1-vCPU recordings and 2-vCPU `true` matched.
	// Without a kernel progress counter the serialized recorder ends a
	// turn only at an exit; a vCPU spinning in the guest kernel on a lock
	// the other vCPU holds would keep its turn (not yet confirmed).
	"tests.TestRecordReplaySMP/2cpu/race":     serializedSMP,
	"tests.TestRecordReplaySMP/2cpu/threads2": serializedSMP,
	"tests.TestRecordReplaySMP/2cpu/timers":   serializedSMP,
	"tests.TestWorkloadsRecordReplay":         "SVM without a PMU (issue 11): serialized and parallel recording of blackscholes 2 tiny on 2 vCPUs did not finish in 90 s in the host",
	"tests.TestVMDisk":                        serializedSMP,
	// The parallel recorder in the host: recording race 20000 on 2
	// vCPUs ended with "guest reset (reboot, triple fault or kernel
	// panic)" after 88 s; conflicts and blackscholes did not finish in
	// 90 s; timers finished in 10 s once and hung (3 min) the next time;
	// and where it finished, no chunk ended at a privilege change (the
	// hardware breakpoints it sets on the kernel's return to user mode,
	// measured under PVM, did not end chunks there).
	"tests.TestParallelRecordReplay": parallelSVM,
	"tests.TestParallelConflicts":    parallelSVM,
	// Measured in the host: after setPTE in the canonical memory and a
	// memslot delete + re-add, the guest still read the old target. Under
	// PVM (shadow paging) the re-add drops the shadow page tables; under
	// SVM with nested paging the guest's own TLB entries survive it. The
	// parallel recorder relies on this to see another vCPU's committed
	// page-table writes; refreshing views on SVM is issue 11's.
	"internal/ept.TestPageTableStaleness/memslot_delete_+_re-add": "SVM without a PMU (issue 11): a memslot delete + re-add does not drop the guest's cached translations under nested paging, which the parallel recorder's view refresh assumes",
}

// parallelSVM is why the parallel recorder's tests are not run in the host.
const parallelSVM = "SVM without a PMU (issue 11): the parallel recorder reset the guest (race), hung (conflicts, blackscholes; timers in 1 of 2 tries) and ended no chunk at a privilege change in the host"

// serializedSMP is why 2-vCPU serialized recordings are not run in the
// host, `true` aside.
const serializedSMP = "SVM without a PMU (issue 11): serialized recording on 2 vCPUs did not finish in the host (race, threads2, blackscholes; timers in 1 of 2 tries); without a kernel progress counter a turn ends only at an exit"
