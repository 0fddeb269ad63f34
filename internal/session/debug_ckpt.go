package session

// The debugger's checkpoints: whole-machine checkpoints (vmm's file
// format) taken before chunks while replays run forwards, so that going
// back replays from the nearest earlier checkpoint instead of from the
// recording's start. One is taken before a chunk when ckptEvery of replay
// has passed since the last one and none exists at or after that chunk.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

// defaultCkptEvery spaces checkpoints in replay time. Measured here on a
// 256 MiB guest (dedup, 2 vCPUs): a checkpoint took 9 ms to write and
// held 15 MB (non-zero pages only); a replay runs about one second of
// wall time per second of guest time, so going back costs at most about
// this long plus a machine start. Denser would cost disk.
const defaultCkptEvery = 2 * time.Second

// maxDebugCkpts bounds the checkpoints a session keeps: at the 15 MB
// measured above, 240 MB of disk. Past it the set is thinned as rr
// thins its own (thin): dense near the newest, sparser further back, so
// that going back a little stays cheap and going far back costs in
// proportion to the distance.
const maxDebugCkpts = 16

// debugCkpt is a checkpoint taken before chunk.
type debugCkpt struct {
	chunk int
	path  string
}

// ckptSet is the debugger's checkpoints, by chunk.
type ckptSet struct {
	mu sync.Mutex
	// dir holds the files ("" until the first one).
	dir  string
	list []debugCkpt
	// last is when the last one was taken or a replay passed one.
	last time.Time
	// every is the spacing (defaultCkptEvery unless set).
	every time.Duration
	// max bounds how many are kept (maxDebugCkpts unless set).
	max int
}

// maybeTake checkpoints m before chunk i if it is time to.
func (c *ckptSet) maybeTake(m *vmm.Machine, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.IsZero() {
		c.last = time.Now()
	}
	if n := len(c.list); n > 0 && c.list[n-1].chunk >= i {
		// Known ground: count from the checkpoint this replay passes.
		for _, k := range c.list {
			if k.chunk == i {
				c.last = time.Now()
			}
		}
		return nil
	}
	if i == 0 || time.Since(c.last) < c.every {
		return nil
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "samsara-debug-")
		if err != nil {
			return fmt.Errorf("debugger checkpoint: %w", err)
		}
		c.dir = dir
	}
	path := filepath.Join(c.dir, fmt.Sprintf("chunk-%d.ckpt", i))
	if err := m.SaveCheckpoint(path); err != nil {
		return fmt.Errorf("debugger checkpoint before chunk %d: %w", i, err)
	}
	c.add(debugCkpt{chunk: i, path: path})
	c.last = time.Now()
	return nil
}

// add puts k in the list and thins it to its limit, removing the files
// it drops. Preconditions: c.mu must be held.
func (c *ckptSet) add(k debugCkpt) {
	c.list = append(c.list, k)
	sort.Slice(c.list, func(a, b int) bool { return c.list[a].chunk < c.list[b].chunk })
	for len(c.list) > c.limit() {
		v := thinVictim(c.list)
		os.Remove(c.list[v].path)
		c.list = append(c.list[:v], c.list[v+1:]...)
	}
}

// limit is the most checkpoints kept (maxDebugCkpts unless set).
func (c *ckptSet) limit() int {
	if c.max > 0 {
		return c.max
	}
	return maxDebugCkpts
}

// thinVictim picks the checkpoint to drop from list (sorted by chunk, at
// least two long): never the newest; of the others, the one whose removal
// leaves the smallest gap (in chunks, the recording's start counting as a
// checkpoint at chunk 0) for its distance from the newest, so that the
// gaps grow with the distance back.
func thinVictim(list []debugCkpt) int {
	newest := list[len(list)-1].chunk
	best, bestScore := 0, -1.0
	for k := 0; k < len(list)-1; k++ {
		prev := 0
		if k > 0 {
			prev = list[k-1].chunk
		}
		gap := float64(list[k+1].chunk - prev)
		score := gap / float64(newest-list[k].chunk+1)
		if bestScore < 0 || score < bestScore {
			best, bestScore = k, score
		}
	}
	return best
}

// bytes is the disk the checkpoints hold.
func (c *ckptSet) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, k := range c.list {
		if st, err := os.Stat(k.path); err == nil {
			n += st.Size()
		}
	}
	return n
}

// before is the latest checkpoint at or before p (nil: none).
func (c *ckptSet) before(p Position) *debugCkpt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *debugCkpt
	for i := range c.list {
		if k := c.list[i]; !p.before(Position{Chunk: k.chunk, Exits: -1}) {
			best = &k // a copy: thinning moves the list's elements
		}
	}
	return best
}

// beforeStrict is the latest checkpoint strictly before p (nil: none).
func (c *ckptSet) beforeStrict(p Position) *debugCkpt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *debugCkpt
	for i := range c.list {
		if k := c.list[i]; (Position{Chunk: k.chunk, Exits: -1}).before(p) {
			best = &k // a copy: thinning moves the list's elements
		}
	}
	return best
}

// chunks are the chunks the checkpoints were taken before.
func (c *ckptSet) chunks() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, k := range c.list {
		out = append(out, k.chunk)
	}
	return out
}

// close removes the files.
func (c *ckptSet) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}
