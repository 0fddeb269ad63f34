package commit

import (
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// Chunk is what the committer needs from a chunk that has ended: its page
// sets and its size. internal/chunk's result implements it.
type Chunk interface {
	// ReadSet returns the pages the chunk accessed. It may include the
	// written pages (a pagemap scan reports every present page); it need
	// not.
	ReadSet() PageSet
	// WriteSet returns the pages the chunk wrote (its private pages).
	WriteSet() PageSet
	// Work returns the work units (guest progress) the chunk executed; it
	// feeds the counters only.
	Work() uint64
}

// ErrClosed is returned (wrapped) by Begin, Commit and Finish once the
// committer has been closed, or after an ordered hook failed.
var ErrClosed = errors.New("committer closed")

// Defaults for Config. Work units are guest progress (internal/pmc:
// retired conditional branches, about one per 5-10 instructions).
const (
	// DefaultInitialBudget is ~4M branches, tens of milliseconds of
	// guest execution: a chunk costs ~0.1-1 ms of fixed work (pagemap scan
	// plus MADV_DONTNEED, PLATFORM.md) plus ~10 µs per page touched, and
	// a chunk this long keeps that overhead to a few percent while still
	// bounding interrupt latency.
	DefaultInitialBudget = 1 << 22
	// DefaultMinBudget is the back-off floor, 8 halvings below the initial
	// budget: a vCPU is squashed at most 9 times in a row before it runs
	// exclusively, and an exclusive chunk of this size stalls the other
	// vCPUs for well under a millisecond.
	DefaultMinBudget = DefaultInitialBudget >> 8
)

// Config configures a Committer.
type Config struct {
	// VCPUs is the number of vCPUs; vCPU ids are 0..VCPUs-1.
	VCPUs int
	// InitialBudget is the chunk budget in work units a vCPU starts with
	// and returns to; 0 means DefaultInitialBudget.
	InitialBudget uint64
	// MinBudget is the back-off floor; 0 means DefaultMinBudget (or
	// InitialBudget if that is smaller). It must not exceed InitialBudget.
	MinBudget uint64
	// ExclusiveWait, if set, is called (with the committer's mutex held;
	// it must not block or call back) when a vCPU claims exclusive mode
	// while other chunks run, so the caller can make them end soon: a
	// running chunk that waits for the claimant (a spin in guest user code,
	// which the recorder cannot preempt) would otherwise wait forever.
	ExclusiveWait func(claimant int)
}

// record is a chunk in the total order, kept for conflict checks.
type record struct {
	// seq is the chunk's position in the total order.
	seq uint64
	// vcpu is the vCPU that ran it.
	vcpu int
	// writes is its write set.
	writes PageSet
}

// Committer orders the chunks of all vCPUs. Its methods are safe for
// concurrent use; each vCPU has at most one Txn at a time.
type Committer struct {
	// log is the committer's logger (rare events only).
	log *zap.Logger
	// initialBudget and minBudget are the back-off bounds.
	initialBudget, minBudget uint64
	// vcpus holds each vCPU's back-off state and counters.
	vcpus []vcpuState

	// mu protects the fields below and the back-off state in vcpus.
	mu sync.Mutex
	// cond is broadcast whenever finished, active, exclOwner or err change.
	cond sync.Cond
	// ordered is the sequence number last handed out (0: none yet).
	ordered uint64
	// finished is the sequence number of the last chunk that completed
	// phase 3; every chunk at or below it has.
	finished uint64
	// recs are the retained chunks, recs[i].seq == recsBase+i, contiguous
	// up to ordered. Entries are immutable and an entry is only cleared
	// (set to nil) once no running chunk can read it, so checkers may scan
	// a copy of the slice header without mu (see Txn.Commit).
	recs []*record
	// recsBase is the sequence number of recs[0].
	recsBase uint64
	// running is each vCPU's current Txn (from Begin until it is squashed,
	// aborted or finished), nil if none.
	running []*Txn
	// active counts the non-nil entries of running.
	active int
	// exclusiveWait is Config.ExclusiveWait.
	exclusiveWait func(claimant int)
	// exclOwner is the vCPU that holds or is waiting for exclusive mode,
	// -1 if none. While it is set no other chunk may begin.
	exclOwner int
	// err is sticky: once set (Close, or a failed ordered hook) every wait
	// ends and every call fails with it.
	err error
}

// New returns a committer for cfg.VCPUs vCPUs. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger) (*Committer, error) {
	if cfg.VCPUs <= 0 {
		return nil, fmt.Errorf("commit: %d vCPUs", cfg.VCPUs)
	}
	if cfg.InitialBudget == 0 {
		cfg.InitialBudget = DefaultInitialBudget
	}
	if cfg.MinBudget == 0 {
		cfg.MinBudget = min(DefaultMinBudget, cfg.InitialBudget)
	}
	if cfg.MinBudget > cfg.InitialBudget {
		return nil, fmt.Errorf("commit: minimum budget %d above initial budget %d", cfg.MinBudget, cfg.InitialBudget)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	c := &Committer{
		log:           logger.Named("commit"),
		initialBudget: cfg.InitialBudget,
		minBudget:     cfg.MinBudget,
		vcpus:         make([]vcpuState, cfg.VCPUs),
		running:       make([]*Txn, cfg.VCPUs),
		exclOwner:     -1,
		recsBase:      1,
		exclusiveWait: cfg.ExclusiveWait,
	}
	c.cond.L = &c.mu
	for i := range c.vcpus {
		c.vcpus[i].budget = cfg.InitialBudget
	}
	return c, nil
}

// Begin starts a chunk of vCPU v and returns its transaction, which carries
// the budget to run it with. Begin blocks while another vCPU's exclusive
// chunk is waiting or running; if v's own next chunk must run exclusively
// (Txn.Exclusive), Begin blocks until every other running chunk has ended.
// It fails only if v is out of range or the committer is closed.
//
// A begun chunk must reach Commit or Abort without waiting for another
// vCPU (end the chunk at HLT or at an exit that needs another vCPU's
// progress instead): an exclusive chunk waits for every running chunk.
func (c *Committer) Begin(v int) (*Txn, error) {
	if v < 0 || v >= len(c.vcpus) {
		return nil, fmt.Errorf("commit: begin chunk of vcpu %d: have %d vCPUs", v, len(c.vcpus))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[v] != nil {
		panic(fmt.Sprintf("commit: vcpu %d began a chunk while its chunk %p is still running", v, c.running[v]))
	}
	vs := &c.vcpus[v]
	for c.err == nil && c.exclOwner != -1 {
		c.cond.Wait()
	}
	exclusive := vs.wantExclusive
	if exclusive && c.err == nil {
		// Claim exclusive mode first so no new chunk begins, then wait
		// for the running ones to reach their boundaries. They may
		// still commit and finish: they began before the claim.
		c.exclOwner = v
		c.log.Debug("exclusive chunk waiting", zap.Int("vcpu", v), zap.Int("running", c.active))
		if c.active > 0 && c.exclusiveWait != nil {
			c.exclusiveWait(v)
		}
		for c.err == nil && c.active > 0 {
			c.cond.Wait()
		}
		if c.err != nil {
			c.exclOwner = -1
			c.cond.Broadcast()
		} else if c.finished != c.ordered {
			panic(fmt.Sprintf("commit: no chunk running but finished %d != ordered %d", c.finished, c.ordered))
		}
	}
	if c.err != nil {
		return nil, fmt.Errorf("begin chunk of vcpu %d: %w", v, c.err)
	}
	t := &Txn{
		c:         c,
		vcpu:      v,
		snapshot:  c.finished,
		budget:    vs.budget,
		exclusive: exclusive,
		retries:   vs.consecutive,
		state:     txnRunning,
	}
	if exclusive {
		vs.exclusiveRuns.Add(1)
	}
	c.running[v] = t
	c.active++
	return t, nil
}

// Close makes every blocked and future Begin, Commit and Finish fail with
// ErrClosed; the recorder calls it when it stops, so that no vCPU goroutine
// stays blocked waiting for a chunk that will never finish.
func (c *Committer) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = ErrClosed
	}
	c.cond.Broadcast()
}

// endLocked removes t from the running chunks.
//
// Preconditions: c.mu must be held; t is running.
func (c *Committer) endLocked(t *Txn) {
	if c.running[t.vcpu] != t {
		panic(fmt.Sprintf("commit: ending chunk of vcpu %d that is not its running chunk", t.vcpu))
	}
	c.running[t.vcpu] = nil
	c.active--
	if c.exclOwner == t.vcpu && t.exclusive {
		c.exclOwner = -1
	}
	c.gcLocked()
	c.cond.Broadcast()
}

// gcLocked drops the write sets no running chunk can conflict with: those
// of chunks at or below the oldest snapshot of a running chunk, or at or
// below finished when none runs (a chunk that begins later snapshots at
// finished or above).
//
// Preconditions: c.mu must be held.
func (c *Committer) gcLocked() {
	keepAfter := c.finished
	for _, t := range c.running {
		if t != nil {
			keepAfter = min(keepAfter, t.snapshot)
		}
	}
	if keepAfter < c.recsBase {
		return
	}
	n := int(keepAfter - c.recsBase + 1)
	// Clear before reslicing so the write sets are garbage now, not when
	// append next reallocates. No checker reads these entries: each
	// checker only reads entries above its own snapshot.
	clear(c.recs[:n])
	c.recs = c.recs[n:]
	c.recsBase = keepAfter + 1
}

// publishLocked appends the write set of a chunk that passed phase 1 and
// returns its sequence number.
//
// Preconditions: c.mu must be held.
func (c *Committer) publishLocked(vcpu int, writes PageSet) uint64 {
	c.ordered++
	if c.recsBase+uint64(len(c.recs)) != c.ordered {
		panic(fmt.Sprintf("commit: retained records %d..+%d do not end before %d", c.recsBase, len(c.recs), c.ordered))
	}
	c.recs = append(c.recs, &record{seq: c.ordered, vcpu: vcpu, writes: writes})
	return c.ordered
}

// conflict checks a chunk's sets against the records with seq > after in
// recs (whose first entry has sequence number base) and returns the first
// conflict in sequence order, or nil.
func conflict(recs []*record, base, after uint64, reads, writes PageSet) *Squash {
	if after+1 < base {
		panic(fmt.Sprintf("commit: records after %d needed but %d is the oldest retained", after, base))
	}
	start := after + 1 - base
	if start >= uint64(len(recs)) {
		return nil
	}
	for _, r := range recs[start:] {
		if p, ok := writes.FirstCommon(r.writes); ok {
			return &Squash{Seq: r.seq, VCPU: r.vcpu, Page: p, Kind: WriteWrite}
		}
		if p, ok := reads.FirstCommon(r.writes); ok {
			return &Squash{Seq: r.seq, VCPU: r.vcpu, Page: p, Kind: ReadWrite}
		}
	}
	return nil
}
