package commit

import (
	"fmt"
)

// txnState is where a Txn is in its life. Transitions:
//
//	txnRunning --Commit, no conflict--> txnOrdered --Finish--> txnDone
//	txnRunning --Commit, conflict-----> txnDone (squashed)
//	txnRunning --Abort----------------> txnDone
//	any         --committer closed----> txnDone (from Commit/Finish)
type txnState int

const (
	// txnRunning: begun, the chunk executes; only Commit or Abort.
	txnRunning txnState = iota
	// txnOrdered: passed phase 1, holds a sequence number; the caller
	// writes back, then must call Finish.
	txnOrdered
	// txnDone: finished, squashed or aborted; no call allowed.
	txnDone
)

// String names the state for panics.
func (s txnState) String() string {
	switch s {
	case txnRunning:
		return "running"
	case txnOrdered:
		return "ordered"
	case txnDone:
		return "done"
	default:
		panic(fmt.Sprintf("commit: impossible txn state %d", int(s)))
	}
}

// Txn is one chunk's passage through the commit: returned by Begin, driven
// by the vCPU goroutine that began it (its methods must not be called
// concurrently with each other).
type Txn struct {
	// c is the committer the chunk belongs to.
	c *Committer
	// vcpu is the vCPU running the chunk.
	vcpu int
	// snapshot is the committer's finished at Begin: every chunk at or
	// below it had completed its write-back when this chunk started.
	snapshot uint64
	// budget is the chunk budget in work units.
	budget uint64
	// exclusive is true if no other chunk runs or commits concurrently.
	exclusive bool
	// retries is the number of consecutive squashes of this vCPU before
	// this chunk.
	retries uint64
	// state is the Txn's life-cycle state (owner goroutine only).
	state txnState
	// seq is the position in the total order once ordered.
	seq uint64
}

// VCPU returns the vCPU that runs the chunk.
func (t *Txn) VCPU() int { return t.vcpu }

// Snapshot returns the sequence number of the last chunk that had finished
// when this one began.
func (t *Txn) Snapshot() uint64 { return t.snapshot }

// Budget returns how many work units the chunk may run.
func (t *Txn) Budget() uint64 { return t.budget }

// Exclusive reports whether the chunk runs alone: no other chunk began
// before it ended, so its commit cannot conflict.
func (t *Txn) Exclusive() bool { return t.exclusive }

// Retries returns how many times in a row this vCPU's chunks were squashed
// before this one (the log's chunk record keeps it as "squashes").
func (t *Txn) Retries() uint64 { return t.retries }

// Seq returns the chunk's position in the total order, 0 before it is
// ordered.
func (t *Txn) Seq() uint64 { return t.seq }

// ConflictKind says how a squashed chunk overlapped an earlier one.
type ConflictKind int

const (
	// WriteWrite: both chunks wrote the page.
	WriteWrite ConflictKind = iota + 1
	// ReadWrite: the squashed chunk read a page the other chunk wrote.
	ReadWrite
)

// String names the kind.
func (k ConflictKind) String() string {
	switch k {
	case WriteWrite:
		return "write-write"
	case ReadWrite:
		return "read-write"
	default:
		return fmt.Sprintf("ConflictKind(%d)", int(k))
	}
}

// Squash describes why a chunk was squashed: the first chunk in commit order
// it conflicted with, and the lowest shared page.
type Squash struct {
	// Seq is the conflicting chunk's position in the total order.
	Seq uint64
	// VCPU is the vCPU that ran the conflicting chunk.
	VCPU int
	// Page is the lowest page number both chunks touched.
	Page uint64
	// Kind says which of this chunk's sets held the page.
	Kind ConflictKind
}

// String formats the squash for logs and errors.
func (s *Squash) String() string {
	return fmt.Sprintf("%s conflict on page %#x with chunk %d (vcpu %d)", s.Kind, s.Page, s.Seq, s.VCPU)
}

// Result is the outcome of phase 1.
type Result struct {
	// Seq is the chunk's position in the total order; 0 if squashed.
	Seq uint64
	// Squash is non-nil if the chunk conflicted: the caller must restore
	// the vCPU to the chunk's start, drop its private pages, and Begin
	// again.
	Squash *Squash
}

// Committed reports whether the chunk entered the order.
func (r Result) Committed() bool { return r.Squash == nil }

// Commit is phase 1: it checks the chunk's page sets against the write sets
// of every chunk ordered after the snapshot and either orders the chunk
// (Result.Seq; the caller then writes its private pages back and calls
// Finish) or squashes it (Result.Squash; the Txn is over and the vCPU's
// budget shrinks). It fails only if the committer is closed, which ends the
// Txn.
func (t *Txn) Commit(ch Chunk) (Result, error) {
	if t.state != txnRunning {
		panic(fmt.Sprintf("commit: Commit of vcpu %d chunk in state %v", t.vcpu, t.state))
	}
	reads, writes, work := ch.ReadSet(), ch.WriteSet(), ch.Work()
	c := t.c

	// The check runs under the mutex: AddWrites may amend a record that a
	// check outside it would already have read.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		t.state = txnDone
		c.endLocked(t)
		return Result{}, fmt.Errorf("commit chunk of vcpu %d: %w", t.vcpu, c.err)
	}
	sq := conflict(c.recs, c.recsBase, t.snapshot, reads, writes)
	vs := &c.vcpus[t.vcpu]
	t.state = txnDone
	if sq != nil {
		if t.exclusive {
			panic(fmt.Sprintf("commit: exclusive chunk of vcpu %d squashed: %v", t.vcpu, sq))
		}
		vs.squashed(c, work)
		c.endLocked(t)
		return Result{Squash: sq}, nil
	}
	t.seq = c.publishLocked(t.vcpu, writes)
	t.state = txnOrdered
	vs.committed(c, work)
	return Result{Seq: t.seq}, nil
}

// Finish is phase 3. Call it after the write-back. It waits until every
// chunk ordered before this one has finished, then runs hook (if not nil)
// with the chunk's sequence number, then marks the chunk finished. The
// hooks of all chunks therefore run one at a time, in sequence order,
// exactly once each; a hook runs without the committer's mutex held and
// may block (log I/O, device emulation).
//
// If hook fails, the error is returned and the committer is poisoned: the
// chunk counts as finished (so nothing waits forever), but every later
// Begin, Commit and Finish fails and no later hook runs, so the log never
// has a gap. If the committer is closed before this chunk's turn, Finish
// returns an error wrapping ErrClosed without running hook.
func (t *Txn) Finish(hook func(seq uint64) error) error {
	if t.state != txnOrdered {
		panic(fmt.Sprintf("commit: Finish of vcpu %d chunk in state %v", t.vcpu, t.state))
	}
	c := t.c
	c.mu.Lock()
	for c.err == nil && c.finished != t.seq-1 {
		c.cond.Wait()
	}
	if c.err != nil {
		t.state = txnDone
		c.endLocked(t)
		c.mu.Unlock()
		return fmt.Errorf("finish chunk %d of vcpu %d: %w", t.seq, t.vcpu, c.err)
	}
	c.mu.Unlock()

	// Our turn: finished == seq-1, and it cannot move until we set it, so
	// no other hook runs now.
	var herr error
	if hook != nil {
		herr = hook(t.seq)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if herr != nil {
		herr = fmt.Errorf("ordered hook of chunk %d (vcpu %d): %w", t.seq, t.vcpu, herr)
		if c.err == nil {
			c.err = fmt.Errorf("%w: %w", ErrClosed, herr)
		}
	}
	if c.finished != t.seq-1 {
		panic(fmt.Sprintf("commit: finished moved from %d to %d during the hook of chunk %d", t.seq-1, c.finished, t.seq))
	}
	c.finished = t.seq
	t.state = txnDone
	c.endLocked(t)
	return herr
}

// AddWrites adds pages to the write set of this ordered chunk, from its
// ordered hook: writes that happen when the chunk's exit is handled in
// order (a device writing guest memory, an interrupt raised in another
// vCPU's local APIC, which the recorder models as a page). Every chunk
// that commits later and began before this one finished is checked
// against them. The caller must keep other chunks from being ordered
// between this chunk's Commit and its AddWrites (the recorder holds one
// lock across both); AddWrites panics if one was.
func (t *Txn) AddWrites(p PageSet) {
	if t.state != txnOrdered {
		panic(fmt.Sprintf("commit: AddWrites of vcpu %d chunk in state %v", t.vcpu, t.state))
	}
	if p.Empty() {
		return
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ordered != t.seq {
		panic(fmt.Sprintf("commit: AddWrites to chunk %d after chunk %d was ordered", t.seq, c.ordered))
	}
	i := t.seq - c.recsBase
	r := c.recs[i]
	c.recs[i] = &record{seq: r.seq, vcpu: r.vcpu, writes: r.writes.Union(p)}
}

// Abort ends a running chunk without committing it and without counting a
// squash: for a chunk that cannot be committed for reasons of its own (the
// vCPU failed, the recorder is stopping). The caller discards the chunk's
// private pages as for a squash.
func (t *Txn) Abort() {
	if t.state != txnRunning {
		panic(fmt.Sprintf("commit: Abort of vcpu %d chunk in state %v", t.vcpu, t.state))
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t.state = txnDone
	c.vcpus[t.vcpu].aborts.Add(1)
	c.endLocked(t)
}
