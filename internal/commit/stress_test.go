package commit

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The stress harness models the parallel recorder: goroutines are vCPUs,
// a []atomic.Uint64 is canonical guest memory (atomic so that torn pages
// are possible without being Go data races), each chunk runs in a private
// copy-on-write view that reads canonical memory live, page by page, and
// writes private copies; committed chunks write their pages back word by
// word, yielding in the middle so that others can see half-written pages.

// wordsPerPage is the size of a test page in uint64 words.
const wordsPerPage = 8

// opKind is what one guest "instruction" of the stress test does.
type opKind uint8

const (
	// opRead folds a word into the vCPU's accumulator register.
	opRead opKind = iota
	// opWrite stores a function of the accumulator into a word (never
	// word 0, the page's counter).
	opWrite
	// opIncr increments the page's counter, word 0 (read-modify-write).
	opIncr
)

// op is one unit of work.
type op struct {
	kind opKind
	page int
	word int
	k    uint64
}

// mem is what an op runs against: a private view or plain memory.
type mem interface {
	load(page, word int) uint64
	store(page, word int, v uint64)
}

// exec runs o on m with the vCPU's accumulator.
func exec(o op, acc *uint64, m mem) {
	switch o.kind {
	case opRead:
		*acc = *acc*31 + m.load(o.page, o.word) + o.k
	case opWrite:
		m.store(o.page, o.word, *acc^o.k)
	case opIncr:
		m.store(o.page, 0, m.load(o.page, 0)+1)
	}
}

// flatMem is plain memory for the sequential re-execution.
type flatMem []uint64

func (m flatMem) load(p, w int) uint64     { return m[p*wordsPerPage+w] }
func (m flatMem) store(p, w int, v uint64) { m[p*wordsPerPage+w] = v }

// view is a chunk's private view of canonical memory.
type view struct {
	canon   []atomic.Uint64
	private map[int][]uint64
	reads   map[int]bool
	// writesNotRead models a tracker that reports written pages apart
	// from read ones (dirty logging): a page only written is not in the
	// read set, so only the write-write check protects it.
	writesNotRead bool
	// yield makes the goroutine yield on every access with this
	// probability, so that chunks interleave on few cores.
	yield float64
	rng   *rand.Rand
}

func (v *view) maybeYield() {
	if v.yield > 0 && v.rng.Float64() < v.yield {
		runtime.Gosched()
	}
}

func (v *view) load(p, w int) uint64 {
	v.maybeYield()
	v.reads[p] = true
	if pg, ok := v.private[p]; ok {
		return pg[w]
	}
	return v.canon[p*wordsPerPage+w].Load()
}

func (v *view) store(p, w int, x uint64) {
	v.maybeYield()
	if !v.writesNotRead {
		v.reads[p] = true // a write faults the page in: pagemap reports it present
	}
	pg, ok := v.private[p]
	if !ok {
		// Copy on write: the page as canonical memory has it now.
		pg = make([]uint64, wordsPerPage)
		for i := range pg {
			pg[i] = v.canon[p*wordsPerPage+i].Load()
		}
		v.private[p] = pg
	}
	pg[w] = x
}

// sets returns the view's page sets as the tracker would.
func (v *view) sets() (reads, writes PageSet) {
	r := make([]uint64, 0, len(v.reads))
	for p := range v.reads {
		r = append(r, uint64(p))
	}
	w := make([]uint64, 0, len(v.private))
	for p := range v.private {
		w = append(w, uint64(p))
	}
	return NewPageSet(r...), NewPageSet(w...)
}

// writeBack is phase 2: copy the private pages to canonical memory word by
// word, yielding halfway through each page.
func (v *view) writeBack() {
	for p, pg := range v.private {
		for i, x := range pg {
			if i == wordsPerPage/2 {
				runtime.Gosched()
			}
			v.canon[p*wordsPerPage+i].Store(x)
		}
	}
}

// loggedChunk is what the ordered hook appends: the chunk record.
type loggedChunk struct {
	seq        uint64
	vcpu       int
	start, end int // op indexes
}

// stressConfig parameterizes a run.
type stressConfig struct {
	vcpus, pages, opsPerVCPU int
	initial, floor           uint64
	// gen returns vCPU v's program.
	gen   func(r *rand.Rand, v int) []op
	yield float64
	// pause is slept between a chunk's end and its commit (the tracker's
	// scan in the real recorder), so that chunks overlap even on one core.
	pause time.Duration
	// writesNotRead: see view.
	writesNotRead bool
}

// stressResult is what a run produced.
type stressResult struct {
	log    []loggedChunk
	canon  []uint64
	accs   []uint64
	stats  Stats
	init   []uint64
	progs  [][]op
	hookOK bool
}

// runStress runs cfg.vcpus goroutines to completion through a committer.
func runStress(t *testing.T, cfg stressConfig) stressResult {
	t.Helper()
	c := newTest(t, cfg.vcpus, cfg.initial, cfg.floor)
	r := rand.New(rand.NewPCG(uint64(cfg.vcpus), uint64(cfg.pages)))
	res := stressResult{
		init:  make([]uint64, cfg.pages*wordsPerPage),
		accs:  make([]uint64, cfg.vcpus),
		progs: make([][]op, cfg.vcpus),
	}
	canon := make([]atomic.Uint64, len(res.init))
	for i := range res.init {
		if i%wordsPerPage != 0 { // counters start at 0
			res.init[i] = r.Uint64()
		}
		canon[i].Store(res.init[i])
	}
	for v := range res.progs {
		res.progs[v] = cfg.gen(r, v)
	}

	// The ordered hook: append to the log; it also checks it is never
	// run concurrently and sees sequence numbers 1, 2, 3, ...
	var hookMu sync.Mutex
	var inHook atomic.Int32
	hookOK := true
	logChunk := func(lc loggedChunk) func(uint64) error {
		return func(seq uint64) error {
			if inHook.Add(1) != 1 {
				hookOK = false
			}
			hookMu.Lock()
			if seq != uint64(len(res.log))+1 {
				hookOK = false
			}
			lc.seq = seq
			res.log = append(res.log, lc)
			hookMu.Unlock()
			inHook.Add(-1)
			return nil
		}
	}

	done := make(chan struct{})
	start := make(chan struct{}) // all vCPUs start together
	var wg sync.WaitGroup
	for v := range cfg.vcpus {
		wg.Go(func() {
			<-start
			prog := res.progs[v]
			rng := rand.New(rand.NewPCG(uint64(v), 99))
			var acc uint64
			for pos := 0; pos < len(prog); {
				tx, err := c.Begin(v)
				if err != nil {
					t.Error(err)
					return
				}
				end := pos + int(min(tx.Budget(), uint64(len(prog)-pos)))
				vw := &view{canon: canon, private: map[int][]uint64{}, reads: map[int]bool{},
					yield: cfg.yield, rng: rng, writesNotRead: cfg.writesNotRead}
				a := acc // the register state at the chunk start
				for _, o := range prog[pos:end] {
					exec(o, &a, vw)
				}
				reads, writes := vw.sets()
				if cfg.pause > 0 {
					time.Sleep(cfg.pause)
				}
				out, err := tx.Commit(testChunk{reads: reads, writes: writes, work: uint64(end - pos)})
				if err != nil {
					t.Error(err)
					return
				}
				if !out.Committed() {
					continue // squash: drop the view, keep acc and pos
				}
				vw.writeBack()
				if err := tx.Finish(logChunk(loggedChunk{vcpu: v, start: pos, end: end})); err != nil {
					t.Error(err)
					return
				}
				acc, pos = a, end
			}
			res.accs[v] = acc
		})
	}
	close(start)
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.Close()
		<-done
		t.Fatalf("no progress: stats %+v", c.Stats())
	}
	res.canon = make([]uint64, len(canon))
	for i := range canon {
		res.canon[i] = canon[i].Load()
	}
	res.stats = c.Stats()
	res.hookOK = hookOK
	return res
}

// checkSerializable re-executes the logged chunks one at a time in commit
// order from the initial memory and compares the final memory, registers
// and counters with the parallel run.
func checkSerializable(t *testing.T, cfg stressConfig, res stressResult) {
	t.Helper()
	if !res.hookOK {
		t.Error("ordered hooks ran concurrently or out of sequence order")
	}
	m := flatMem(slices.Clone(res.init))
	accs := make([]uint64, cfg.vcpus)
	next := make([]int, cfg.vcpus)
	incrs := 0
	for i, lc := range res.log {
		if lc.seq != uint64(i+1) {
			t.Fatalf("log entry %d has seq %d", i, lc.seq)
		}
		if lc.start != next[lc.vcpu] {
			t.Fatalf("chunk %d of vcpu %d starts at op %d, its previous chunk ended at %d", lc.seq, lc.vcpu, lc.start, next[lc.vcpu])
		}
		next[lc.vcpu] = lc.end
		for _, o := range res.progs[lc.vcpu][lc.start:lc.end] {
			exec(o, &accs[lc.vcpu], m)
			if o.kind == opIncr {
				incrs++
			}
		}
	}
	for v, n := range next {
		if n != len(res.progs[v]) {
			t.Errorf("vcpu %d committed %d of %d ops", v, n, len(res.progs[v]))
		}
	}
	if !slices.Equal(accs, res.accs) {
		t.Errorf("registers: parallel %v, sequential %v", res.accs, accs)
	}
	diffs := 0
	for i := range m {
		if m[i] != res.canon[i] {
			if diffs < 5 {
				t.Errorf("page %d word %d: parallel %#x, sequential %#x", i/wordsPerPage, i%wordsPerPage, res.canon[i], m[i])
			}
			diffs++
		}
	}
	if diffs > 0 {
		t.Errorf("%d words differ: the commit order is not a serialization", diffs)
	}
	var sum uint64
	for p := range cfg.pages {
		sum += res.canon[p*wordsPerPage]
	}
	if sum != uint64(incrs) {
		t.Errorf("counters sum to %d, %d increments committed: lost updates", sum, incrs)
	}
	var commits uint64
	for _, v := range res.stats.VCPUs {
		commits += v.Commits
	}
	if commits != uint64(len(res.log)) || res.stats.Finished != uint64(len(res.log)) {
		t.Errorf("stats: %d commits, finished %d, log has %d", commits, res.stats.Finished, len(res.log))
	}
	if res.stats.RetainedWriteSets != 0 {
		t.Errorf("%d write sets retained after the run", res.stats.RetainedWriteSets)
	}
}

// logStats reports the counters of a run.
func logStats(t *testing.T, res stressResult) {
	t.Helper()
	for v, s := range res.stats.VCPUs {
		t.Logf("vcpu %d: commits %d squashes %d exclusive %d work %d reexecuted %d",
			v, s.Commits, s.Squashes, s.ExclusiveRuns, s.CommittedWork, s.ReexecutedWork)
	}
}

// randomProgram mixes reads, writes and increments over all pages, with
// the first four pages
// hot in 1/hotEvery of the ops (never if hotEvery is 0).
func randomProgram(pages, n, hotEvery int) func(r *rand.Rand, v int) []op {
	return func(r *rand.Rand, v int) []op {
		prog := make([]op, n)
		for i := range prog {
			p := r.IntN(pages)
			if hotEvery > 0 && r.IntN(hotEvery) == 0 {
				p = r.IntN(4) // hot pages
			}
			o := op{page: p, word: 1 + r.IntN(wordsPerPage-1), k: r.Uint64()}
			switch x := r.IntN(10); {
			case x < 5:
				o.kind = opRead
			case x < 8:
				o.kind = opWrite
			default:
				o.kind = opIncr
			}
			prog[i] = o
		}
		return prog
	}
}

func TestStressSerializable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hotEvery int
		cfg      stressConfig
	}{
		{"4 vcpus 64 pages", 4, stressConfig{vcpus: 4, pages: 64, opsPerVCPU: 20000, initial: 32, floor: 2, yield: 0.05}},
		{"4 vcpus 65536 pages, few conflicts", 0, stressConfig{vcpus: 4, pages: 1 << 16, opsPerVCPU: 20000, initial: 32, floor: 4, yield: 0.01}},
		{"3 vcpus 8 pages", 4, stressConfig{vcpus: 3, pages: 8, opsPerVCPU: 10000, initial: 16, floor: 1, yield: 0.1}},
		{"8 vcpus 256 pages", 4, stressConfig{vcpus: 8, pages: 256, opsPerVCPU: 5000, initial: 64, floor: 4, yield: 0.02}},
		{"4 vcpus 32 pages, write sets apart", 4, stressConfig{vcpus: 4, pages: 32, opsPerVCPU: 10000, initial: 16, floor: 2, yield: 0.05, writesNotRead: true}},
		{"2 vcpus 16 pages, slow scan", 4, stressConfig{vcpus: 2, pages: 16, opsPerVCPU: 2000, initial: 16, floor: 2, yield: 0.05, pause: 10 * time.Microsecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.gen = randomProgram(cfg.pages, cfg.opsPerVCPU, tc.hotEvery)
			res := runStress(t, cfg)
			checkSerializable(t, cfg, res)
			logStats(t, res)
			var squashes uint64
			for _, s := range res.stats.VCPUs {
				squashes += s.Squashes
			}
			if squashes == 0 {
				t.Log("no squash happened: conflicts were not exercised")
			}
		})
	}
}

// TestStressContention makes every op touch page 0: back-off and the
// exclusive fallback must get every vCPU through its program.
func TestStressContention(t *testing.T) {
	cfg := stressConfig{vcpus: 4, pages: 1, opsPerVCPU: 400, initial: 16, floor: 1, yield: 0.5, pause: 20 * time.Microsecond}
	cfg.gen = func(r *rand.Rand, v int) []op {
		prog := make([]op, cfg.opsPerVCPU)
		for i := range prog {
			prog[i] = op{kind: opIncr}
			if i%3 == 0 {
				prog[i] = op{kind: opRead, word: 1 + r.IntN(wordsPerPage-1), k: uint64(i)}
			}
		}
		return prog
	}
	res := runStress(t, cfg)
	checkSerializable(t, cfg, res)
	logStats(t, res)
	var squashes, excl uint64
	for _, s := range res.stats.VCPUs {
		squashes += s.Squashes
		excl += s.ExclusiveRuns
	}
	if squashes == 0 || excl == 0 {
		t.Errorf("%d squashes, %d exclusive runs: contention did not exercise back-off", squashes, excl)
	}
}
