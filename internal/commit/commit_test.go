package commit

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testChunk is a Chunk with given sets.
type testChunk struct {
	reads, writes PageSet
	work          uint64
}

func (c testChunk) ReadSet() PageSet  { return c.reads }
func (c testChunk) WriteSet() PageSet { return c.writes }
func (c testChunk) Work() uint64      { return c.work }

// chunkOf returns a chunk of 1 work unit that read r and wrote w.
func chunkOf(r, w []uint64) testChunk {
	return testChunk{reads: NewPageSet(r...), writes: NewPageSet(w...), work: 1}
}

// newTest returns a committer with small budgets.
func newTest(t testing.TB, vcpus int, initial, floor uint64) *Committer {
	t.Helper()
	c, err := New(Config{VCPUs: vcpus, InitialBudget: initial, MinBudget: floor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustBegin begins a chunk of v or fails the test.
func mustBegin(t testing.TB, c *Committer, v int) *Txn {
	t.Helper()
	tx, err := c.Begin(v)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// mustCommit runs phase 1 and fails the test on error.
func mustCommit(t testing.TB, tx *Txn, ch Chunk) Result {
	t.Helper()
	r, err := tx.Commit(ch)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustFinish runs phase 3 with no hook.
func mustFinish(t testing.TB, tx *Txn) {
	t.Helper()
	if err := tx.Finish(nil); err != nil {
		t.Fatal(err)
	}
}

// runChunk runs one whole chunk of v that must commit, and returns its seq.
func runChunk(t testing.TB, c *Committer, v int, ch Chunk) uint64 {
	t.Helper()
	tx := mustBegin(t, c, v)
	r := mustCommit(t, tx, ch)
	if !r.Committed() {
		t.Fatalf("chunk of vcpu %d squashed: %v", v, r.Squash)
	}
	mustFinish(t, tx)
	return r.Seq
}

// other is a chunk committed by another vCPU in TestConflictDetection.
type other struct {
	r, w []uint64
	// finish: complete phase 3 (else it stays between phases 1 and 3).
	finish bool
}

func TestConflictDetection(t *testing.T) {
	pg := PageOf
	tests := []struct {
		name string
		// before commit and finish before the chunk under test begins.
		before []other
		// during commit after it began, in order, each by its own vCPU.
		during []other
		// r, w are the sets of the chunk under test.
		r, w []uint64
		// want is nil for a commit.
		want *Squash
	}{
		{name: "alone", r: []uint64{1}, w: []uint64{2}},
		{name: "disjoint", during: []other{{r: []uint64{1}, w: []uint64{2}, finish: true}},
			r: []uint64{3}, w: []uint64{4}},
		{name: "write-write", during: []other{{w: []uint64{7}, finish: true}},
			w:    []uint64{7},
			want: &Squash{Seq: 1, VCPU: 1, Page: 7, Kind: WriteWrite}},
		{name: "write-write, other still writing back", during: []other{{w: []uint64{7}}},
			w:    []uint64{7},
			want: &Squash{Seq: 1, VCPU: 1, Page: 7, Kind: WriteWrite}},
		{name: "read after other's write", during: []other{{w: []uint64{3, 9}, finish: true}},
			r: []uint64{9}, w: []uint64{4},
			want: &Squash{Seq: 1, VCPU: 1, Page: 9, Kind: ReadWrite}},
		{name: "other only read my written page", during: []other{{r: []uint64{4}, w: []uint64{5}, finish: true}},
			r: []uint64{6}, w: []uint64{4}},
		{name: "both only read", during: []other{{r: []uint64{4, 5}, finish: true}},
			r: []uint64{4, 5}},
		{name: "false sharing is a conflict", during: []other{{w: []uint64{pg(0x5008)}, finish: true}},
			w:    []uint64{pg(0x5010)},
			want: &Squash{Seq: 1, VCPU: 1, Page: 5, Kind: WriteWrite}},
		{name: "neighbouring pages are not", during: []other{{w: []uint64{pg(0x5ff8)}, finish: true}},
			w: []uint64{pg(0x6000)}},
		{name: "overlap with chunk finished before begin", before: []other{{w: []uint64{7}, finish: true}},
			r: []uint64{7}, w: []uint64{7}},
		{name: "first conflicting chunk in order is named",
			during: []other{{w: []uint64{1}, finish: true}, {w: []uint64{8}, finish: true}, {w: []uint64{3}, finish: true}},
			r:      []uint64{3, 8}, w: []uint64{20},
			want: &Squash{Seq: 2, VCPU: 2, Page: 8, Kind: ReadWrite}},
		{name: "write reported before read within one chunk",
			during: []other{{w: []uint64{2, 6}, finish: true}},
			r:      []uint64{2}, w: []uint64{6},
			want: &Squash{Seq: 1, VCPU: 1, Page: 6, Kind: WriteWrite}},
		{name: "lowest shared page is named",
			during: []other{{w: []uint64{10, 11, 12}, finish: true}},
			r:      []uint64{12, 11}, w: []uint64{},
			want: &Squash{Seq: 1, VCPU: 1, Page: 11, Kind: ReadWrite}},
		{name: "empty chunk never conflicts", during: []other{{r: []uint64{1}, w: []uint64{1}, finish: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 1 + max(len(tt.during), 1)
			c := newTest(t, n, 64, 8)
			for _, o := range tt.before {
				runChunk(t, c, 1, chunkOf(o.r, o.w))
			}
			base := uint64(len(tt.before))
			tx := mustBegin(t, c, 0)
			var pending []*Txn
			for i, o := range tt.during {
				ot := mustBegin(t, c, i+1)
				if r := mustCommit(t, ot, chunkOf(o.r, o.w)); !r.Committed() {
					t.Fatalf("other chunk %d squashed: %v", i, r.Squash)
				}
				if o.finish && len(pending) == 0 {
					mustFinish(t, ot)
				} else {
					pending = append(pending, ot)
				}
			}
			r := mustCommit(t, tx, chunkOf(tt.r, tt.w))
			if tt.want == nil {
				if !r.Committed() {
					t.Fatalf("squashed (%v), want commit", r.Squash)
				}
				if want := base + uint64(len(tt.during)) + 1; r.Seq != want {
					t.Errorf("seq %d, want %d", r.Seq, want)
				}
				pending = append(pending, tx)
			} else {
				want := *tt.want
				want.Seq += base
				if r.Committed() {
					t.Fatalf("committed as %d, want %v", r.Seq, &want)
				}
				if *r.Squash != want {
					t.Fatalf("squash %v, want %v", r.Squash, &want)
				}
			}
			for _, p := range pending {
				mustFinish(t, p)
			}
		})
	}
}

// TestSnapshotRuleHalfWritten checks that a chunk that begins while another
// is between phases 1 and 3 is checked against it (it may have read a torn
// page), and one that begins after is not.
func TestSnapshotRuleHalfWritten(t *testing.T) {
	c := newTest(t, 4, 64, 8)
	a := mustBegin(t, c, 0)
	if r := mustCommit(t, a, chunkOf(nil, []uint64{5, 6})); r.Seq != 1 {
		t.Fatalf("a: %+v", r)
	}
	// a is writing back pages 5 and 6 now.
	b := mustBegin(t, c, 1)
	if b.Snapshot() != 0 {
		t.Fatalf("snapshot during write-back = %d, want 0 (last finished, not last ordered)", b.Snapshot())
	}
	d := mustBegin(t, c, 3) // also begins during the write-back, touches other pages
	mustFinish(t, a)
	late := mustBegin(t, c, 2)
	if late.Snapshot() != 1 {
		t.Fatalf("snapshot after finish = %d, want 1", late.Snapshot())
	}

	r := mustCommit(t, b, chunkOf([]uint64{6}, nil))
	if want := (Squash{Seq: 1, VCPU: 0, Page: 6, Kind: ReadWrite}); r.Committed() || *r.Squash != want {
		t.Fatalf("chunk begun during write-back read a written page: %+v, want squash %v", r, &want)
	}
	if r := mustCommit(t, d, chunkOf([]uint64{7}, []uint64{8})); !r.Committed() {
		t.Fatalf("chunk begun during write-back with disjoint pages squashed: %v", r.Squash)
	} else {
		mustFinish(t, d)
	}
	if r := mustCommit(t, late, chunkOf([]uint64{5, 6}, []uint64{6})); !r.Committed() {
		t.Fatalf("chunk begun after the write-back squashed: %v", r.Squash)
	} else {
		mustFinish(t, late)
	}
}

// TestDisjointCommitInParallel checks that disjoint chunks are both ordered
// while neither has finished (write-backs overlap) and that the ordered
// hooks still run in sequence order.
func TestDisjointCommitInParallel(t *testing.T) {
	c := newTest(t, 2, 64, 8)
	a, b := mustBegin(t, c, 0), mustBegin(t, c, 1)
	ra := mustCommit(t, a, chunkOf([]uint64{1}, []uint64{2}))
	rb := mustCommit(t, b, chunkOf([]uint64{3}, []uint64{4}))
	if !ra.Committed() || !rb.Committed() || ra.Seq != 1 || rb.Seq != 2 {
		t.Fatalf("a %+v b %+v, want seqs 1 and 2", ra, rb)
	}
	var mu sync.Mutex
	var hooks []uint64
	hook := func(seq uint64) error {
		mu.Lock()
		defer mu.Unlock()
		hooks = append(hooks, seq)
		return nil
	}
	done := make(chan error)
	go func() { done <- b.Finish(hook) }()
	select {
	case err := <-done:
		t.Fatalf("chunk 2 finished (%v) before chunk 1", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := a.Finish(hook); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(hooks) != "[1 2]" {
		t.Fatalf("hooks ran as %v, want [1 2]", hooks)
	}
}

// squashOnce makes vCPU v's next chunk squash: another vCPU commits a write
// to a page v's chunk reads.
func squashOnce(t *testing.T, c *Committer, v, other int) *Txn {
	t.Helper()
	tx := mustBegin(t, c, v)
	runChunk(t, c, other, chunkOf(nil, []uint64{100}))
	r := mustCommit(t, tx, chunkOf([]uint64{100}, nil))
	if r.Committed() {
		t.Fatalf("vcpu %d chunk committed, want squash", v)
	}
	return tx
}

func TestBackoff(t *testing.T) {
	// Each step is "s" (a squash) or "c" (a commit) of vCPU 0; then the
	// budget and exclusivity of its next chunk.
	tests := []struct {
		name          string
		initial, min  uint64
		steps         string
		wantBudget    uint64
		wantExclusive bool
		wantRetries   uint64
	}{
		{"fresh", 64, 8, "", 64, false, 0},
		{"one squash halves", 64, 8, "s", 32, false, 1},
		{"down to the floor", 64, 8, "sss", 8, false, 3},
		{"squash at the floor goes exclusive", 64, 8, "ssss", 8, true, 4},
		{"more squashes are impossible (exclusive)", 64, 8, "ssssc", 16, false, 0},
		{"commit doubles back", 64, 8, "sssc", 16, false, 0},
		{"doubling stops at initial", 64, 8, "sssccccc", 64, false, 0},
		{"non-power-of-two clamps to floor", 100, 30, "ss", 30, false, 2},
		{"non-power-of-two clamps to initial", 100, 30, "ssc", 60, false, 0},
		{"non-power-of-two clamps to initial 2", 100, 30, "sscc", 100, false, 0},
		{"floor equals initial: first squash goes exclusive", 16, 16, "s", 16, true, 1},
		{"squash after commit restarts", 64, 8, "ssccs", 32, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTest(t, 2, tt.initial, tt.min)
			for _, s := range tt.steps {
				switch s {
				case 's':
					squashOnce(t, c, 0, 1)
				case 'c':
					runChunk(t, c, 0, chunkOf(nil, []uint64{1}))
				}
			}
			tx := mustBegin(t, c, 0)
			if tx.Budget() != tt.wantBudget || tx.Exclusive() != tt.wantExclusive || tx.Retries() != tt.wantRetries {
				t.Errorf("budget %d exclusive %v retries %d, want %d %v %d",
					tx.Budget(), tx.Exclusive(), tx.Retries(), tt.wantBudget, tt.wantExclusive, tt.wantRetries)
			}
			tx.Abort()
		})
	}
}

// waitBlocked asserts that ch stays empty for a while (the call is blocked).
func waitBlocked[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned (%v), want it blocked", what, v)
	case <-time.After(30 * time.Millisecond):
	}
}

// TestExclusive checks that an exclusive chunk waits for running chunks,
// which may still commit; that no chunk begins while it waits or runs; and
// that the others resume after it finishes.
func TestExclusive(t *testing.T) {
	c := newTest(t, 3, 8, 8)
	squashOnce(t, c, 0, 1) // at the floor: vCPU 0 goes exclusive
	running := mustBegin(t, c, 1)

	exclCh := make(chan *Txn, 1)
	go func() {
		tx, err := c.Begin(0)
		if err != nil {
			t.Error(err)
		}
		exclCh <- tx
	}()
	waitBlocked(t, exclCh, "exclusive Begin with a chunk running")

	otherCh := make(chan *Txn, 1)
	go func() {
		tx, err := c.Begin(2)
		if err != nil {
			t.Error(err)
		}
		otherCh <- tx
	}()
	waitBlocked(t, otherCh, "Begin while an exclusive chunk waits")

	// The chunk that was running may commit and finish.
	if r := mustCommit(t, running, chunkOf([]uint64{100}, []uint64{100})); !r.Committed() {
		t.Fatalf("running chunk squashed: %v", r.Squash)
	}
	mustFinish(t, running)

	excl := <-exclCh
	if !excl.Exclusive() {
		t.Fatal("Begin after a squash at the floor is not exclusive")
	}
	waitBlocked(t, otherCh, "Begin while an exclusive chunk runs")
	r := mustCommit(t, excl, chunkOf([]uint64{100}, []uint64{100}))
	if !r.Committed() {
		t.Fatalf("exclusive chunk squashed: %v", r.Squash)
	}
	waitBlocked(t, otherCh, "Begin while an exclusive chunk writes back")
	mustFinish(t, excl)
	other := <-otherCh
	if other.Exclusive() || other.Snapshot() != r.Seq {
		t.Fatalf("chunk after exclusive: exclusive %v snapshot %d, want false %d", other.Exclusive(), other.Snapshot(), r.Seq)
	}
	other.Abort()
	st := c.Stats()
	if st.VCPUs[0].ExclusiveRuns != 1 || st.VCPUs[0].Budget != 8 {
		t.Errorf("vcpu 0 stats %+v, want 1 exclusive run and budget 8", st.VCPUs[0])
	}
	if st.VCPUs[2].Aborts != 1 {
		t.Errorf("vcpu 2 aborts %d, want 1", st.VCPUs[2].Aborts)
	}
}

func TestHookErrorPoisons(t *testing.T) {
	c := newTest(t, 2, 8, 1)
	a, b := mustBegin(t, c, 0), mustBegin(t, c, 1)
	mustCommit(t, a, chunkOf(nil, []uint64{1}))
	mustCommit(t, b, chunkOf(nil, []uint64{2}))
	boom := errors.New("disk full")
	var ran atomic.Bool
	done := make(chan error)
	go func() {
		done <- b.Finish(func(uint64) error { ran.Store(true); return nil })
	}()
	if err := a.Finish(func(uint64) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Finish = %v, want %v", err, boom)
	}
	if err := <-done; !errors.Is(err, ErrClosed) || !errors.Is(err, boom) {
		t.Fatalf("later Finish = %v, want ErrClosed wrapping %v", err, boom)
	}
	if ran.Load() {
		t.Fatal("hook of a chunk after a failed hook ran")
	}
	if _, err := c.Begin(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after failed hook = %v, want ErrClosed", err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	c := newTest(t, 3, 8, 8)
	squashOnce(t, c, 0, 1)
	running := mustBegin(t, c, 1)
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Begin(0) // waits for the running chunk, forever
		errCh <- err
	}()
	waitBlocked(t, errCh, "exclusive Begin")
	c.Close()
	if err := <-errCh; !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin = %v, want ErrClosed", err)
	}
	if _, err := running.Commit(chunkOf(nil, nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit = %v, want ErrClosed", err)
	}
}

func TestCloseUnblocksFinish(t *testing.T) {
	c := newTest(t, 2, 8, 8)
	a, b := mustBegin(t, c, 0), mustBegin(t, c, 1)
	mustCommit(t, a, chunkOf(nil, []uint64{1}))
	mustCommit(t, b, chunkOf(nil, []uint64{2}))
	errCh := make(chan error, 1)
	go func() { errCh <- b.Finish(func(uint64) error { t.Error("hook ran"); return nil }) }()
	waitBlocked(t, errCh, "Finish of chunk 2 before chunk 1")
	c.Close()
	if err := <-errCh; !errors.Is(err, ErrClosed) {
		t.Fatalf("Finish = %v, want ErrClosed", err)
	}
}

func TestMisuse(t *testing.T) {
	c := newTest(t, 1, 8, 8)
	if _, err := c.Begin(1); err == nil {
		t.Error("Begin of vcpu 1 of 1 succeeded")
	}
	if _, err := New(Config{VCPUs: 1, InitialBudget: 4, MinBudget: 8}, nil); err == nil {
		t.Error("New with floor above initial budget succeeded")
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New with 0 vCPUs succeeded")
	}
	tx := mustBegin(t, c, 0)
	mustPanic(t, "second Begin", func() { c.Begin(0) })
	mustPanic(t, "Finish before Commit", func() { tx.Finish(nil) })
	mustCommit(t, tx, chunkOf(nil, nil))
	mustPanic(t, "second Commit", func() { tx.Commit(chunkOf(nil, nil)) })
	mustPanic(t, "Abort after Commit", tx.Abort)
	mustFinish(t, tx)
	mustPanic(t, "second Finish", func() { tx.Finish(nil) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{VCPUs: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx := mustBegin(t, c, 0)
	if tx.Budget() != DefaultInitialBudget || c.minBudget != DefaultMinBudget {
		t.Errorf("budget %d floor %d, want defaults", tx.Budget(), c.minBudget)
	}
	tx.Abort()
	c, err = New(Config{VCPUs: 1, InitialBudget: 10}, nil)
	if err != nil || c.minBudget != 10 {
		t.Errorf("small initial budget: floor %d err %v, want 10", c.minBudget, err)
	}
}

// TestGarbageCollection checks that write sets are kept exactly as long as
// a running chunk may be checked against them.
func TestGarbageCollection(t *testing.T) {
	c := newTest(t, 2, 8, 8)
	for i := range 100 {
		runChunk(t, c, i%2, chunkOf(nil, []uint64{uint64(i)}))
		if n := c.Stats().RetainedWriteSets; n != 0 {
			t.Fatalf("after %d sequential chunks %d write sets retained, want 0", i+1, n)
		}
	}
	old := mustBegin(t, c, 0) // snapshot 100 pins everything after it
	for i := range 50 {
		runChunk(t, c, 1, chunkOf(nil, []uint64{uint64(1000 + i)}))
	}
	if n := c.Stats().RetainedWriteSets; n != 50 {
		t.Fatalf("with an old chunk running %d write sets retained, want 50", n)
	}
	// The old chunk must still see the write of chunk 101...
	r := mustCommit(t, old, chunkOf([]uint64{1000}, nil))
	if r.Committed() || r.Squash.Seq != 101 {
		t.Fatalf("old chunk: %+v, want squash by chunk 101", r)
	}
	if n := c.Stats().RetainedWriteSets; n != 0 {
		t.Fatalf("after the old chunk ended %d write sets retained, want 0", n)
	}
}

func TestStats(t *testing.T) {
	c := newTest(t, 2, 1<<10, 1)
	runChunk(t, c, 0, testChunk{work: 0})
	runChunk(t, c, 0, testChunk{work: 1})
	runChunk(t, c, 0, testChunk{work: 1000})
	tx := mustBegin(t, c, 1)
	runChunk(t, c, 0, testChunk{writes: NewPageSet(9), work: 3})
	if r := mustCommit(t, tx, testChunk{reads: NewPageSet(9), work: 77}); r.Committed() {
		t.Fatal("want squash")
	}
	st := c.Stats()
	v0, v1 := st.VCPUs[0], st.VCPUs[1]
	if v0.Commits != 4 || v0.CommittedWork != 1004 || v0.Squashes != 0 {
		t.Errorf("vcpu 0: %+v", v0)
	}
	if v1.Commits != 0 || v1.Squashes != 1 || v1.ReexecutedWork != 77 || v1.Budget != 1<<9 {
		t.Errorf("vcpu 1: %+v", v1)
	}
	want := map[int]uint64{0: 1, 1: 1, 2: 1, 10: 1} // 0, 1, 3, 1000
	for i, n := range st.ChunkSizes.Buckets {
		if n != want[i] {
			lo, hi := BucketRange(i)
			t.Errorf("bucket %d [%d,%d] = %d, want %d", i, lo, hi, n, want[i])
		}
	}
	if st.ChunkSizes.Count() != 4 || st.Ordered != 4 || st.Finished != 4 {
		t.Errorf("count %d ordered %d finished %d, want 4 4 4", st.ChunkSizes.Count(), st.Ordered, st.Finished)
	}
	for _, w := range []uint64{0, 1, 2, 3, 1000, 1 << 63, ^uint64(0)} {
		lo, hi := BucketRange(bucketOf(w))
		if w < lo || w > hi {
			t.Errorf("work %d in bucket %d [%d,%d]", w, bucketOf(w), lo, hi)
		}
	}
}

// Writes a hook adds (device DMA at the exit) squash a chunk that began
// before the hook's chunk finished and read the page.
func TestAddWritesSquashesEarlierReader(t *testing.T) {
	c, err := New(Config{VCPUs: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Begin(0)
	b, _ := c.Begin(1) // begins before a finishes
	ra, err := a.Commit(testChunk{reads: NewPageSet(1), writes: NewPageSet(1)})
	if err != nil || !ra.Committed() {
		t.Fatalf("a: %v %v", ra, err)
	}
	if err := a.Finish(func(uint64) error { a.AddWrites(NewPageSet(7)); return nil }); err != nil {
		t.Fatal(err)
	}
	rb, err := b.Commit(testChunk{reads: NewPageSet(7)})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Committed() || rb.Squash.Page != 7 {
		t.Fatalf("b read page 7, which a's hook wrote, and committed: %+v", rb)
	}
}
