package main

import (
	"fmt"
	"time"
)

// nativeWorkload is the workload whose native speed-up from 1 to 2
// threads states the host's own parallelism (issue 18): blackscholes
// shares nothing between its threads but the input, so its speed-up is
// what two CPU-bound threads get from this host.
const nativeWorkload = "blackscholes"

// nativeRuns is how many times each thread count runs; the fastest run
// counts (the machine is shared: the minimum is the least disturbed).
const nativeRuns = 3

// nativeSpeedup is a workload run natively on the host with 1 and 2
// threads.
type nativeSpeedup struct {
	// Command is the workload with its size, without the thread count.
	Command string
	// One and Two are the fastest of nativeRuns runs with 1 and 2
	// threads.
	One, Two time.Duration
	// Err says why it was not measured.
	Err string `json:",omitempty"`
}

// Speedup is One/Two: how much faster two threads ran than one.
func (n *nativeSpeedup) Speedup() float64 {
	if n == nil || n.Err != "" || n.Two <= 0 {
		return 0
	}
	return n.One.Seconds() / n.Two.Seconds()
}

// measureNative runs bin (a static workload of build/workloads, which
// runs on the host as it does in the guest) with 1 and 2 threads.
func measureNative(bin string, timeout time.Duration) *nativeSpeedup {
	n := &nativeSpeedup{Command: nativeWorkload + " THREADS " + userHeavySize}
	for _, threads := range []int{1, 2} {
		best := time.Duration(0)
		for i := 0; i < nativeRuns; i++ {
			o, out := runCmd(timeout, bin, fmt.Sprint(threads), userHeavySize)
			if !o.ok() {
				n.Err = fmt.Sprintf("%s %d %s: %s %s", bin, threads, userHeavySize, o.Err, lastLine(out))
				return n
			}
			if best == 0 || o.Wall < best {
				best = o.Wall
			}
		}
		if threads == 1 {
			n.One = best
		} else {
			n.Two = best
		}
	}
	return n
}

// nativeSentence is the report's statement of the host's parallelism.
func nativeSentence(n *nativeSpeedup) string {
	switch {
	case n == nil:
		return ""
	case n.Err != "":
		return fmt.Sprintf("The host's native 2-thread speed-up was not measured: %s.\n\n", md(n.Err))
	}
	return fmt.Sprintf("The host's own parallelism: `%s` natively took %.2f s with 1 thread and %.2f s with 2 (fastest of %d runs each): "+
		"a **%.2fx** speed-up. No parallel recorder can beat that on this host.\n\n", n.Command, n.One.Seconds(), n.Two.Seconds(), nativeRuns, n.Speedup())
}
