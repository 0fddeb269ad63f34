package commit

// Histogram counts chunks by size in power-of-two buckets: Buckets[0]
// counts chunks of 0 work units, Buckets[i] (i >= 1) those of
// [2^(i-1), 2^i) units.
type Histogram struct {
	// Buckets are the counts, indexed as above.
	Buckets [histogramBuckets]uint64 `json:"buckets"`
}

// BucketRange returns the smallest and largest chunk size counted in
// bucket i.
func BucketRange(i int) (lo, hi uint64) {
	if i == 0 {
		return 0, 0
	}
	lo = 1 << (i - 1)
	return lo, lo<<1 - 1
}

// Count returns the number of chunks counted.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, b := range h.Buckets {
		n += b
	}
	return n
}

// add adds o's counts to h.
func (h *Histogram) add(o *Histogram) {
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
}

// VCPUStats are one vCPU's counters.
type VCPUStats struct {
	// Commits is the number of the vCPU's chunks that were ordered.
	Commits uint64 `json:"commits"`
	// Squashes is the number of its chunks squashed by a conflict.
	Squashes uint64 `json:"squashes"`
	// ExclusiveRuns is the number of its chunks that ran exclusively.
	ExclusiveRuns uint64 `json:"exclusive_runs"`
	// Aborts is the number of its chunks ended by Abort.
	Aborts uint64 `json:"aborts"`
	// CommittedWork sums the work units of its committed chunks.
	CommittedWork uint64 `json:"committed_work"`
	// ReexecutedWork sums the work units of its squashed chunks.
	ReexecutedWork uint64 `json:"reexecuted_work"`
	// Budget is the budget of its next chunk.
	Budget uint64 `json:"budget"`
	// ChunkSizes is the histogram of its committed chunks' work units.
	ChunkSizes Histogram `json:"chunk_sizes"`
}

// Stats are the committer's counters, for `samsara inspect`.
type Stats struct {
	// Ordered is the sequence number last handed out.
	Ordered uint64 `json:"ordered"`
	// Finished is the sequence number of the last finished chunk.
	Finished uint64 `json:"finished"`
	// RetainedWriteSets is the number of write sets kept for conflict
	// checks (bounded by garbage collection).
	RetainedWriteSets int `json:"retained_write_sets"`
	// VCPUs are the per-vCPU counters, indexed by vCPU.
	VCPUs []VCPUStats `json:"vcpus"`
	// ChunkSizes is the histogram of all committed chunks' work units.
	ChunkSizes Histogram `json:"chunk_sizes"`
}

// Stats returns a snapshot of the counters. Counters of different vCPUs
// may be read at slightly different moments.
func (c *Committer) Stats() Stats {
	c.mu.Lock()
	s := Stats{
		Ordered:           c.ordered,
		Finished:          c.finished,
		RetainedWriteSets: len(c.recs),
		VCPUs:             make([]VCPUStats, len(c.vcpus)),
	}
	for i := range c.vcpus {
		s.VCPUs[i].Budget = c.vcpus[i].budget
	}
	c.mu.Unlock()
	for i := range c.vcpus {
		vs, out := &c.vcpus[i], &s.VCPUs[i]
		out.Commits = vs.commits.Load()
		out.Squashes = vs.squashes.Load()
		out.ExclusiveRuns = vs.exclusiveRuns.Load()
		out.Aborts = vs.aborts.Load()
		out.CommittedWork = vs.committedWork.Load()
		out.ReexecutedWork = vs.reexecutedWork.Load()
		for b := range vs.sizes {
			out.ChunkSizes.Buckets[b] = vs.sizes[b].Load()
		}
		s.ChunkSizes.add(&out.ChunkSizes)
	}
	return s
}
