package commit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkPageSetFirstCommon measures the conflict check of two disjoint
// sets (the common, worst case: no early exit) by size, interleaved so the
// range test cannot answer, and against a much larger set (binary search).
func BenchmarkPageSetFirstCommon(b *testing.B) {
	for _, n := range []int{1, 16, 256, 4096, 100000} {
		a := NewPageSet(seqPages(0, 2, n)...)
		o := NewPageSet(seqPages(1, 2, n)...)
		b.Run(fmt.Sprintf("merge/%d", n), func(b *testing.B) {
			for b.Loop() {
				if a.Intersects(o) {
					b.Fatal("intersect")
				}
			}
		})
		small := NewPageSet(seqPages(1, 2*uint64(max(n/64, 1)), 64)...)
		b.Run(fmt.Sprintf("small64-vs/%d", n), func(b *testing.B) {
			for b.Loop() {
				if small.Intersects(a) {
					b.Fatal("intersect")
				}
			}
		})
	}
}

// BenchmarkCommitSetSize measures one chunk's whole pass (Begin, Commit,
// Finish) when n pages it read and wrote are checked against one
// concurrently committed chunk of n other pages, interleaved with them.
func BenchmarkCommitSetSize(b *testing.B) {
	for _, n := range []int{1, 16, 256, 4096, 100000} {
		b.Run(fmt.Sprintf("pages=%d", n), func(b *testing.B) {
			c := newTest(b, 2, 64, 8)
			mine := testChunk{reads: NewPageSet(seqPages(0, 2, n)...), writes: NewPageSet(seqPages(0, 2, n)...), work: 1}
			theirs := testChunk{writes: NewPageSet(seqPages(1, 2, n)...), work: 1}
			// No test helpers in the loop: t.Helper costs a stack walk.
			for b.Loop() {
				tx, _ := c.Begin(0)
				other, _ := c.Begin(1)
				if r, _ := other.Commit(theirs); !r.Committed() {
					b.Fatal("squashed")
				}
				if err := other.Finish(nil); err != nil {
					b.Fatal(err)
				}
				if r, _ := tx.Commit(mine); !r.Committed() {
					b.Fatal("squashed")
				}
				if err := tx.Finish(nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2, "chunks/op")
		})
	}
}

// spin busy-waits for about n iterations of a cheap loop (the chunk's
// guest execution in BenchmarkThroughput); it returns a value so the
// compiler keeps the loop.
func spin(n int) uint64 {
	x := uint64(n)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// spinSink keeps spin's results alive.
var spinSink atomic.Uint64

// BenchmarkThroughput runs g goroutines that each run chunks of ~2 µs of
// "guest execution" (a spin loop) touching 16 pages, then commit them,
// each goroutine on its own pages (disjoint) or all on the same pages
// (overlapping: conflicts, back-off and exclusive runs). One op is one
// committed chunk; it reports committed chunks per second and the squash
// and exclusive ratios.
func BenchmarkThroughput(b *testing.B) {
	const pages = 16
	for _, g := range []int{1, 2, 4} {
		for _, overlap := range []bool{false, true} {
			name := fmt.Sprintf("g=%d/disjoint", g)
			if overlap {
				name = fmt.Sprintf("g=%d/overlapping", g)
			}
			b.Run(name, func(b *testing.B) {
				c := newTest(b, g, 64, 8)
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				b.ResetTimer()
				for v := range g {
					base := uint64(v * pages)
					if overlap {
						base = 0
					}
					ch := testChunk{reads: NewPageSet(seqPages(base, 1, pages)...), writes: NewPageSet(seqPages(base, 1, pages/2)...), work: 1}
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							for {
								tx, err := c.Begin(v)
								if err != nil {
									b.Error(err)
									return
								}
								spinSink.Add(spin(1000))
								r, err := tx.Commit(ch)
								if err != nil {
									b.Error(err)
									return
								}
								if r.Committed() {
									if err := tx.Finish(nil); err != nil {
										b.Error(err)
									}
									break
								}
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				var squashes, commits, excl uint64
				for _, s := range c.Stats().VCPUs {
					squashes += s.Squashes
					commits += s.Commits
					excl += s.ExclusiveRuns
				}
				b.ReportMetric(float64(commits)/b.Elapsed().Seconds(), "commits/s")
				b.ReportMetric(float64(squashes)/float64(commits), "squashes/commit")
				b.ReportMetric(float64(excl)/float64(commits), "exclusive/commit")
			})
		}
	}
}
