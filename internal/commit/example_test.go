package commit_test

import (
	"fmt"
	"sync"

	"github.com/samsara-vmm/samsara/internal/commit"
)

// pages is a finished chunk as the page tracker reports it.
type pages struct{ r, w commit.PageSet }

func (p pages) ReadSet() commit.PageSet  { return p.r }
func (p pages) WriteSet() commit.PageSet { return p.w }
func (p pages) Work() uint64             { return 100 }

// The loop each vCPU goroutine of the parallel recorder runs.
func Example() {
	c, err := commit.New(commit.Config{VCPUs: 2, InitialBudget: 1000, MinBudget: 10}, nil)
	if err != nil {
		panic(err)
	}
	var (
		mu  sync.Mutex
		log []string // stands in for log.Writer, appended in commit order
	)
	vcpu := func(v int, chunks int) {
		for done := 0; done < chunks; {
			tx, err := c.Begin(v) // blocks while another vCPU runs exclusively
			if err != nil {
				return // committer closed: the recorder is stopping
			}
			// Run the guest for at most tx.Budget() work units in the
			// private view (tx.Exclusive(): nobody else runs now), stop
			// at the exit or the budget, read the page sets.
			ch := pages{r: commit.NewPageSet(uint64(10*v), 99), w: commit.NewPageSet(uint64(10*v + 1))}
			res, err := tx.Commit(ch) // phase 1
			if err != nil {
				return
			}
			if !res.Committed() {
				// Squash: restore the vCPU registers saved at the chunk
				// start, drop the private pages, run it again (with the
				// smaller budget the next Begin hands out).
				continue
			}
			// Phase 2: copy the private pages to canonical memory.
			// Phase 3: in commit order, log the chunk record and its
			// NDEs and complete the exit that ended the chunk.
			err = tx.Finish(func(seq uint64) error {
				mu.Lock()
				defer mu.Unlock()
				log = append(log, fmt.Sprintf("chunk %d: vcpu %d", seq, v))
				return nil
			})
			if err != nil {
				return
			}
			done++
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { vcpu(0, 3) })
	wg.Wait()
	wg.Go(func() { vcpu(1, 2) })
	wg.Wait()
	for _, l := range log {
		fmt.Println(l)
	}
	fmt.Println("commits:", c.Stats().VCPUs[0].Commits, c.Stats().VCPUs[1].Commits)
	// Output:
	// chunk 1: vcpu 0
	// chunk 2: vcpu 0
	// chunk 3: vcpu 0
	// chunk 4: vcpu 1
	// chunk 5: vcpu 1
	// commits: 3 2
}
