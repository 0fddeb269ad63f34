package commit

import (
	"math/bits"
	"sync/atomic"
)

// vcpuState is one vCPU's back-off state and counters.
type vcpuState struct {
	// Back-off state; protected by Committer.mu.

	// budget is the budget of the vCPU's next chunk, in
	// [minBudget, initialBudget].
	budget uint64
	// consecutive counts the squashes since the vCPU's last commit.
	consecutive uint64
	// wantExclusive is set when a chunk at the budget floor was squashed:
	// the next chunk runs exclusively. A commit clears it.
	wantExclusive bool

	// Counters; atomic so Stats can read them without stopping anyone.

	// commits counts chunks ordered (phase 1 passed).
	commits atomic.Uint64
	// squashes counts chunks squashed by a conflict.
	squashes atomic.Uint64
	// exclusiveRuns counts chunks begun in exclusive mode.
	exclusiveRuns atomic.Uint64
	// aborts counts chunks ended by Abort.
	aborts atomic.Uint64
	// committedWork sums the work units of committed chunks.
	committedWork atomic.Uint64
	// reexecutedWork sums the work units of squashed chunks: work that
	// had to be done again.
	reexecutedWork atomic.Uint64
	// sizes is the histogram of committed chunk sizes (see Histogram).
	sizes [histogramBuckets]atomic.Uint64
}

// squashed applies binary exponential back-off after a conflict: halve the
// budget down to the floor; a squash at the floor makes the next chunk
// exclusive.
//
// Preconditions: c.mu must be held.
func (vs *vcpuState) squashed(c *Committer, work uint64) {
	vs.squashes.Add(1)
	vs.reexecutedWork.Add(work)
	vs.consecutive++
	if vs.budget <= c.minBudget {
		vs.wantExclusive = true
		return
	}
	vs.budget = max(vs.budget/2, c.minBudget)
}

// committed records a commit and restores the budget by doubling it, up to
// the initial budget.
//
// Preconditions: c.mu must be held.
func (vs *vcpuState) committed(c *Committer, work uint64) {
	vs.commits.Add(1)
	vs.committedWork.Add(work)
	vs.sizes[bucketOf(work)].Add(1)
	vs.consecutive = 0
	vs.wantExclusive = false
	if vs.budget > c.initialBudget/2 {
		vs.budget = c.initialBudget
	} else {
		vs.budget *= 2
	}
}

// histogramBuckets is one bucket for 0 and one per power of two of uint64.
const histogramBuckets = 65

// bucketOf returns the histogram bucket of a chunk of work units: 0 for 0,
// else i such that 2^(i-1) <= work < 2^i.
func bucketOf(work uint64) int { return bits.Len64(work) }
