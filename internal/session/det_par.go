package session

// The parallel recorder (DESIGN.md, "One log, one replayer, two
// recorders"; the Samsara paper's chunk-based recording). Every vCPU runs
// at once, each in its own KVM VM whose memory is a private view of the
// guest's memfd (internal/ept): a chunk's writes stay private, and at its
// end the view yields the pages it read and wrote. Chunks enter one total
// order through internal/commit; a chunk whose pages another chunk wrote
// since it began is squashed: its vCPU goes back to the chunk's start and
// runs it again. The log holds the chunks in commit order and is replayed
// by the serialized replayer (det.go), one chunk after another.
//
// What makes a committed order replayable:
//
//   - A chunk ends at its vCPU's first exit (or a preemption in guest
//     kernel code, as in serialized mode). The exit is handled (devices,
//     virtual time, timers) only after the chunk is ordered, in order,
//     under commitMu: devices see the same sequence of accesses as the
//     replayer, which handles each chunk's exit right after running it.
//   - Device writes to guest memory and interrupts raised in another vCPU's
//     local APIC while an exit is handled join that chunk's write set
//     (Txn.AddWrites), the APIC of vCPU i as a pseudo-page past the end of
//     RAM. A chunk that decided its interrupt injection at its start
//     "reads" its own APIC's page, so a chunk that began before such a
//     change and would have decided differently at its place in the order
//     is squashed.
//   - Host-side state that a squash must undo is the vCPU's (registers,
//     FPU, MSRs, events: snapshotted at the chunk start) and the injected
//     vector (LAPIC.Unacknowledge); memory is undone by ept's Discard.
//   - A pending I/O completion (the data of the last port or MMIO read) is
//     applied with an immediate-exit KVM_RUN before the chunk's snapshot,
//     in record and replay alike (flushPendingIO).

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/chunk"
	"github.com/samsara-vmm/samsara/internal/commit"
	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// Chunk budgets of the parallel recorder, in microseconds of wall time a
// chunk may run in guest kernel code before it is preempted (user code
// cannot be preempted exactly without a PMU; such a chunk ends at its
// next exit).
const (
	// parBudget: the serialized recorder's preemptAfter; a kernel chunk
	// that long without an exit is usually spinning on another vCPU, whose
	// write it will only see after a squash.
	parBudget = uint64(preemptAfter / time.Microsecond)
	// parMinBudget: 5 halvings (commit's binary exponential back-off)
	// below parBudget, ~0.3 ms; squashed again at this size, a vCPU runs
	// its next chunk alone.
	parMinBudget = parBudget >> 5
)

// parallel is the parallel recorder's machine-wide state.
type parallel struct {
	// tracker makes the per-vCPU views.
	tracker ept.Tracker
	// views[i] is vCPU i's private view of guest memory, attached to its
	// own KVM VM (vmm.Config.SeparateVMs: its own shadow page tables).
	views []ept.View
	// pages is the number of RAM pages; page pages+i stands for vCPU i's
	// local APIC in page sets.
	pages uint64
	// committer orders the chunks.
	committer *commit.Committer

	// commitMu serializes a chunk's commit from its conflict check to the
	// end of its exit handling, so that writes made while handling the
	// exit join its write set before any later chunk is checked.
	commitMu sync.Mutex
	// lastCommit is when the previous chunk committed (or recording
	// started); guarded by commitMu.
	lastCommit time.Time

	// apicMu orders a chunk's interrupt decision against the exit
	// handling of commits, which raise interrupts in other vCPUs' local
	// APICs (timers, IPIs, devices). parBegin holds it from the decision
	// to the chunk's registration as running; parCommitted holds it from
	// its exit handling to its early dooming. So a chunk decides either
	// after a commit's interrupts are raised (and sees them) or before
	// (and is doomed by them). Without it, a chunk whose transaction began
	// after another's commit, and which read its APIC during that commit's
	// exit handling, just before a timer fired there, was neither: it
	// committed the interrupt it had chosen (0x21), and replay, which
	// runs the commit first, injected the timer's (0xec) instead
	// (measured: a fresh make test's parallel corpus batch diverged so
	// twice in a row, "injected vector 33, replayed 236" and the reverse).
	// Lock order: commitMu, then apicMu, then the machine lock.
	apicMu sync.Mutex

	// exclusiveClaimed is set while a vCPU waits to run a chunk alone:
	// other chunks are then abandoned at their next kick (see
	// commit.Config.ExclusiveWait).
	exclusiveClaimed atomic.Bool

	// waiting counts vCPUs waiting to become runnable; guarded by the
	// machine lock.
	waiting int
	// cond (on the machine lock) wakes waiting vCPUs after every commit
	// and stop.
	cond *sync.Cond

	// running[i] is vCPU i's running chunk, for early conflicts
	// (det_early.go).
	running []runningChunk
	// enders[i] decides where vCPU i's chunks end (internal/chunk).
	enders []*chunk.Ender
}

// ErrTrackerUnusable is a page tracker that cannot back this machine.
var ErrTrackerUnusable = errors.New("page tracker cannot back the guest")

// rangeAttacher is what the recorder needs from a view beyond ept.View:
// guest RAM has a hole below 1 MiB, so it is two memslots over one view.
type rangeAttacher interface {
	AttachRange(vmFD int, slot uint32, gpa, off, size uint64) error
}

// newParallel creates one view per vCPU and attaches it to the vCPU's VM.
func (s *Session) newParallel() error {
	m := s.m
	if !m.HasSeparateVMs() {
		return fmt.Errorf("parallel recording needs a machine built with SeparateVMs set")
	}
	name := s.opts.Tracker
	if name == "" {
		name = ept.DefaultName()
	}
	tr, err := ept.New(name)
	if err != nil {
		return err
	}
	size := uint64(len(m.Memory()))
	p := &parallel{tracker: tr, pages: size / ept.PageSize, cond: sync.NewCond(lockerOf{m}),
		running: make([]runningChunk, len(s.vcpus))}
	s.par = p
	for i := range s.vcpus {
		view, err := tr.NewView(m.MemFD(), size)
		if err != nil {
			return fmt.Errorf("%s view of vcpu %d: %w", name, i, err)
		}
		p.views = append(p.views, view)
		ra, ok := view.(rangeAttacher)
		if !ok {
			return fmt.Errorf("tracker %s: %w (it has no AttachRange)", name, ErrTrackerUnusable)
		}
		if err := ra.AttachRange(m.VMOf(i), 0, 0, 0, vmm.LowMemEnd); err != nil {
			return fmt.Errorf("tracker %s: %w: %v", name, ErrTrackerUnusable, err)
		}
		if err := ra.AttachRange(m.VMOf(i), 1, vmm.HighMemStart, vmm.HighMemStart, size-vmm.HighMemStart); err != nil {
			return fmt.Errorf("tracker %s: %w: %v", name, ErrTrackerUnusable, err)
		}
	}
	return nil
}

// lockerOf is the machine lock as a sync.Locker, for the cond.
type lockerOf struct{ m *vmm.Machine }

func (l lockerOf) Lock()   { l.m.Lock() }
func (l lockerOf) Unlock() { l.m.Unlock() }

// close releases the views.
func (p *parallel) close() {
	for _, v := range p.views {
		v.Close()
	}
	p.views = nil
}

// recordParallel runs the guest with the parallel recorder until it
// powers off, appending chunk records in commit order, a final digest and
// the end record to w.
func (s *Session) recordParallel(w RecordSink) (vmm.Result, error) {
	c, err := commit.New(commit.Config{VCPUs: len(s.vcpus), InitialBudget: parBudget, MinBudget: parMinBudget,
		ExclusiveWait: func(claimant int) {
			s.par.exclusiveClaimed.Store(true)
			for _, v := range s.vcpus {
				if v.id != claimant {
					v.Kick()
				}
			}
		}}, s.log)
	if err != nil {
		return vmm.Result{}, err
	}
	s.par.committer = c
	for range s.vcpus {
		s.par.enders = append(s.par.enders, s.newEnder())
	}
	defer s.debugWrites.close()
	s.start()
	s.par.lastCommit = time.Now()
	errs := make(chan error, len(s.vcpus))
	for _, v := range s.vcpus {
		go func(v *vcpu) { errs <- v.parLoop(w) }(v)
	}
	var runErr error
	for range s.vcpus {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
			s.m.Lock()
			s.par.cond.Broadcast()
			s.m.Unlock()
			s.m.Stop(err)
			c.Close()
		}
	}
	c.Close()
	s.m.Stop(runErr)
	if _, err := s.m.Outcome(); err != nil {
		return s.m.Result(), err
	}
	return s.finishRecording(w, s.recorderStats())
}

// recorderStats is the log record of the committer's counters.
func (s *Session) recorderStats() *log.RecorderStats {
	st := s.par.committer.Stats()
	rs := &log.RecorderStats{
		Tracker:    s.par.tracker.Name(),
		VCPUs:      make([]log.RecorderVCPUStats, len(st.VCPUs)),
		ChunkSizes: log.SizeHistogram(st.ChunkSizes.Buckets),
	}
	for i, v := range st.VCPUs {
		rs.VCPUs[i] = log.RecorderVCPUStats{Commits: v.Commits, Squashes: v.Squashes,
			ExclusiveRuns: v.ExclusiveRuns, CommittedWork: v.CommittedWork, ReexecutedWork: v.ReexecutedWork}
	}
	return rs
}

// ParallelStats returns the commit counters of a parallel recording.
func (s *Session) ParallelStats() (commit.Stats, bool) {
	if s.par == nil || s.par.committer == nil {
		return commit.Stats{}, false
	}
	return s.par.committer.Stats(), true
}

// parLoop is a vCPU's goroutine in the parallel recorder: it runs chunks
// until the machine stops. It returns nil on a normal stop.
func (v *vcpu) parLoop(w RecordSink) error {
	v.LockThread()
	m := v.s.m
	for {
		t := time.Now()
		ok, err := v.waitRunnable()
		if err != nil || !ok {
			return err
		}
		tx, err := v.s.par.committer.Begin(v.id)
		v.lap(PhaseWait, t)
		if err != nil {
			if m.IsStopped() {
				return nil
			}
			return err
		}
		if err := v.parChunk(tx, w); err != nil {
			if m.IsStopped() && errors.Is(err, commit.ErrClosed) {
				return nil
			}
			return fmt.Errorf("vcpu %d: %w", v.id, err)
		}
	}
}

// waitRunnable blocks until v can run a chunk. When every vCPU waits and
// none can run, virtual time jumps to the next timer deadline (as the
// serialized recorder and the replayer do when the vCPU whose turn it is
// cannot run). It returns false when the machine stopped.
func (v *vcpu) waitRunnable() (bool, error) {
	s := v.s
	p := s.par
	s.m.Lock()
	defer s.m.Unlock()
	p.waiting++
	defer func() { p.waiting-- }()
	for {
		if s.m.IsStopped() {
			return false, nil
		}
		if v.RunnableLocked() {
			return true, nil
		}
		if p.waiting == len(s.vcpus) && !s.anyRunnableLocked() {
			if !s.m.AdvanceIdleLocked() {
				return false, errNoProgress
			}
			p.cond.Broadcast()
			continue
		}
		p.cond.Wait()
	}
}

// anyRunnableLocked reports whether some vCPU can run.
// Preconditions: the machine lock must be held.
func (s *Session) anyRunnableLocked() bool {
	for _, v := range s.vcpus {
		if v.RunnableLocked() {
			return true
		}
	}
	return false
}

// parSets is a chunk's page sets for the committer.
type parSets struct {
	reads, writes commit.PageSet
	work          uint64
}

func (s parSets) ReadSet() commit.PageSet  { return s.reads }
func (s parSets) WriteSet() commit.PageSet { return s.writes }
func (s parSets) Work() uint64             { return s.work }

// parRun is one chunk of the parallel recorder, from its start to its
// commit or squash.
type parRun struct {
	tx   *commit.Txn
	snap vmm.ArchState
	// start is the kernel instruction count at the start.
	start uint64
	// injected: an interrupt (vec) was injected at the start; readsAPIC:
	// the start's injection decision read the local APIC.
	injected, readsAPIC bool
	vec                 uint8
	// gen is the chunk's number for early conflicts (det_early.go).
	gen     uint64
	started time.Time
	// How the chunk stopped running: a real exit; the machine stopped; it
	// was abandoned for an exclusive chunk or doomed by an early conflict
	// (both re-run it); at a privilege-change breakpoint; else preempted.
	exited, stopped, abandoned, doomed, atBound bool
	// stop: it ended at a state stop there (det_stop.go, parStop).
	stop *stopAt
	sets parSets
	// ran and harvested are the chunk's time in the guest and at its
	// harvest (profile.go: a squash moves them to PhaseSquashed).
	ran, harvested time.Duration
}

// parChunk runs one chunk of v, commits it or squashes it, and on commit
// handles its exit and appends its record, in commit order.
func (v *vcpu) parChunk(tx *commit.Txn, w RecordSink) error {
	c := &parRun{tx: tx}
	t := time.Now()
	if err := v.parBegin(c); err != nil {
		tx.Abort()
		return err
	}
	t = v.lap(PhaseCheckpoint, t)
	defer v.s.par.stopRunning(v.id)
	budget := time.Duration(tx.Budget()) * time.Microsecond
	stopWatchdog := startWatchdog(budget, preemptAfter, nil, v.Kick)
	if err := v.beginBounds(c.injected, budget); err != nil {
		stopWatchdog()
		tx.Abort()
		return err
	}
	err := v.parRunGuest(c)
	stopWatchdog()
	next := v.lap(PhaseGuest, t)
	c.ran, t = next.Sub(t), next
	if err != nil {
		return err
	}
	if v.s.tracing() {
		r, _ := v.Regs()
		v.s.log.Debug(fmt.Sprintf("PARCHUNK vcpu %d took %v injected %v armed %+v end rip %#x exited %v privilege %v doomed %v",
			v.id, time.Since(c.started), c.injected, v.s.par.enders[v.id].Armed(), r.RIP, c.exited, c.atBound, c.doomed))
	}
	if err := v.parHarvest(c); err != nil {
		return err
	}
	next = v.lap(PhaseHarvest, t)
	c.harvested, t = next.Sub(t), next
	defer v.lap(PhaseCommit, t) // less its exit handling and squash (parCommitted, squash)
	return v.parCommit(c, w)
}

// parBegin starts a chunk: pending I/O completed, the vCPU's state saved
// for a squash, an interrupt injected if one can be, the view's tracking
// begun.
func (v *vcpu) parBegin(c *parRun) error {
	if err := v.BeginChunk(); err != nil {
		return err
	}
	var err error
	if c.snap, err = v.SaveArch(); err != nil {
		return fmt.Errorf("snapshot at chunk start: %w", err)
	}
	if c.start, err = v.kernelInsns(); err != nil {
		return err
	}
	v.last = c.start
	// The injection decision depends on this vCPU's local APIC; if it
	// could inject (or did), the chunk reads the APIC's pseudo-page.
	p := v.s.par
	p.apicMu.Lock()
	defer p.apicMu.Unlock()
	if c.vec, c.injected, err = v.Inject(); err != nil {
		return err
	}
	c.readsAPIC = c.injected
	if !c.injected {
		if c.readsAPIC, err = v.ReadyForInterrupt(); err != nil {
			return err
		}
	}
	if err := p.views[v.id].Begin(); err != nil {
		return err
	}
	c.gen = p.startRunning(v.id, c.readsAPIC)
	c.started = time.Now()
	return nil
}

// parRunGuest runs the guest until the chunk ends: an exit, a
// privilege-change breakpoint, a preemption internal/chunk allows, a
// stop, an exclusive claim or an early conflict.
func (v *vcpu) parRunGuest(c *parRun) error {
	p := v.s.par
	ender := p.enders[v.id]
	for {
		if p.isDoomed(v.id, c.gen) {
			c.doomed = true // aborted and re-run (det_early.go)
			return nil
		}
		// The doom and the claim kick this vCPU; checked again after
		// the entry clears the last kick, so a kick between the check
		// above and the entry is not lost (vmm, VCPU.EnterUnless).
		err := v.EnterUnless(func() bool {
			return p.isDoomed(v.id, c.gen) || !c.tx.Exclusive() && p.exclusiveClaimed.Load()
		})
		switch {
		case err == nil && v.ExitReason() == vmm.ExitDebug:
			c.atBound = true // a privilege change (det_bounds.go)
			return v.atBound()
		case err == nil:
			c.exited = true
			return nil
		case !errors.Is(err, vmm.ErrInterrupted):
			return err
		case v.s.m.IsStopped():
			c.stopped = true
			return nil
		case !c.tx.Exclusive() && p.exclusiveClaimed.Load():
			c.abandoned = true
			return nil
		}
		if stopped, err := v.parStop(c); stopped || err != nil {
			return err
		}
		// Preemption and privilege-change ends: internal/chunk decides;
		// without an exact kernel count there are none (chunks end at
		// exits, yields among them).
		if !v.s.opts.KernelCount || !ender.MayPreempt(time.Since(c.started)) {
			continue
		}
		ok, user, err := v.preemptablePoint()
		if err != nil {
			return err
		}
		preempt, rearm := ender.Kicked(chunk.Where{Preemptable: ok, User: user})
		if preempt {
			return nil
		}
		if rearm != nil {
			if err := v.armBounds(*rearm); err != nil {
				return err
			}
		}
	}
}

// parHarvest collects the chunk's page sets when it stopped running.
func (v *vcpu) parHarvest(c *parRun) error {
	p := v.s.par
	p.stopRunning(v.id)
	if err := v.endBounds(); err != nil {
		return err
	}
	sets, err := p.views[v.id].End()
	if err != nil {
		return err
	}
	insns, err := v.kernelInsns()
	if err != nil {
		return err
	}
	reads := pageSet(sets.Read)
	if c.readsAPIC {
		reads = reads.Union(commit.NewPageSet(p.pages + uint64(v.id)))
	}
	c.sets = parSets{reads: reads, writes: pageSet(sets.Write), work: insns - c.start + 1}
	return nil
}

// parCommit commits the chunk in the total order, or squashes it.
func (v *vcpu) parCommit(c *parRun, w RecordSink) error {
	p := v.s.par
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	// A doomed chunk stopped where the kick found it, maybe in guest user
	// mode where no end point can be replayed: it is never committed, even
	// if its final page sets pass the check (det_early.go says when).
	if c.stopped || c.abandoned || c.doomed || v.s.m.IsStopped() {
		c.tx.Abort()
		return v.squash(c)
	}
	if v.s.opts.DebugSquashAll && !v.debugSquashed {
		// Diagnostics: squash every chunk once (Options.DebugSquashAll).
		v.debugSquashed = true
		c.tx.Abort()
		return v.squash(c)
	}
	v.debugSquashed = false
	res, err := c.tx.Commit(c.sets)
	if err != nil {
		v.squash(c)
		return err
	}
	if !res.Committed() {
		if v.s.tracing() {
			wr := c.sets.writes.Pages()
			v.s.log.Debug(fmt.Sprintf("SQUASH vcpu %d: %v (reads %d, writes %d: %v)", v.id, res.Squash, c.sets.reads.Len(), len(wr), wr[:min(len(wr), 32)]))
		}
		return v.squash(c)
	}
	if c.stop != nil {
		// The pages it wrote, as the chunk left them: still private to
		// its view until Commit.
		if err := v.takeStop(c.stop, c.sets.writes.Pages(), p.views[v.id].Mem()); err != nil {
			return err
		}
	}
	if err := p.views[v.id].Commit(nil); err != nil {
		return err
	}
	if c.tx.Exclusive() {
		defer p.exclusiveClaimed.Store(false)
	}
	return c.tx.Finish(func(seq uint64) error { return v.parCommitted(c, seq, w) })
}

// parCommitted is a committed chunk's ordered part: its exit is handled
// (in commit order, as the replayer will), its record appended, and the
// writes its exit made (device DMA, interrupts raised in other APICs)
// join its write set and doom the running chunks they conflict with.
func (v *vcpu) parCommitted(c *parRun, seq uint64, w RecordSink) error {
	s, p := v.s, v.s.par
	rec := log.Chunk{VCPU: uint32(v.id), Squashes: uint32(c.tx.Retries())}
	p.apicMu.Lock() // until the chunks the raised interrupts doom are doomed
	defer p.apicMu.Unlock()
	before := s.m.RequestedVectors()
	var devWrites commit.PageSet
	reason := log.ReasonBudget
	if c.atBound {
		reason = log.ReasonPrivilege
	}
	if c.exited {
		rec.Exits = 1
		if v.ExitWritesRAM() {
			// A virtio notification: counted as writing every page, which
			// squashes every chunk running beside it; disk I/O is rare.
			devWrites = allPages(p.pages)
		}
		var err error
		t := time.Now()
		reason, _, err = v.handleChunkExit()
		v.move(PhaseCommit, PhaseExit, time.Since(t)) // parChunk charges all of parCommit to commit
		if err != nil {
			return err
		}
	}
	if c.stop != nil {
		reason = log.ReasonStateStop
	}
	rec, err := v.finishChunk(rec, reason)
	if err != nil {
		return err
	}
	if c.stop != nil {
		for _, st := range v.stops {
			if err := w.Append(st); err != nil {
				return err
			}
		}
		v.stops = nil
	}
	// The chunk's guest time is the host time since the previous commit
	// (clock.go); commits are ordered, under commitMu.
	now := time.Now()
	rec.GuestMicros = guestMicros(now.Sub(p.lastCommit))
	p.lastCommit = now
	s.chunkEnded(&rec)
	added := devWrites.Union(s.raisedSince(before))
	c.tx.AddWrites(added)
	if err := s.doomConflicting(v.id, c.sets.writes.Union(added), !devWrites.Empty()); err != nil {
		return err
	}
	if err := w.Append(&rec); err != nil {
		return err
	}
	s.chunksDone.Add(1)
	s.debugRecordWrites(seq-1, c.sets.writes.Pages())
	s.debugRecordEnd(seq-1, v, c.injected, c.vec, c.exited)
	if s.tracing() {
		wr := c.sets.writes.Pages()
		s.log.Debug(fmt.Sprintf("COMMIT %d vcpu %d writes %d: %v", seq-1, v.id, len(wr), wr[:min(len(wr), 32)]))
	}
	s.m.Lock()
	p.cond.Broadcast()
	s.m.Unlock()
	return nil
}

// squash puts v back at its chunk's start: the exit the chunk ended at
// (if any) is completed first so KVM holds no pending I/O, then the
// snapshot is restored, the injected vector requested again, and the
// chunk's private pages dropped.
func (v *vcpu) squash(c *parRun) error {
	// The chunk's running and harvest were wasted; so is what follows
	// (parChunk charges it to commit, whence it moves on return).
	v.move(PhaseGuest, PhaseSquashed, c.ran)
	v.move(PhaseHarvest, PhaseSquashed, c.harvested)
	defer func(t time.Time) { v.move(PhaseCommit, PhaseSquashed, time.Since(t)) }(time.Now())
	if err := v.FlushPendingIO(); err != nil {
		return err
	}
	if err := v.RestoreArch(&c.snap); err != nil {
		return fmt.Errorf("restore at squash: %w", err)
	}
	if v.s.opts.DebugSquashAll {
		if got, err := v.SaveArch(); err == nil {
			if d := vmm.ArchMismatch(&got, &c.snap); d != "" {
				v.s.log.Warn("restore mismatch at squash", zap.Int("vcpu", v.id), zap.String("differs", d))
			}
		}
	}
	if c.injected {
		v.Unacknowledge(c.vec)
	}
	return v.s.par.views[v.id].Discard()
}

// raisedSince returns the APIC pseudo-pages of the vCPUs whose IRR gained
// a vector since before.
func (s *Session) raisedSince(before [][8]uint32) commit.PageSet {
	after := s.m.RequestedVectors()
	var pages []uint64
	for i := range after {
		for j := range after[i] {
			if after[i][j]&^before[i][j] != 0 {
				pages = append(pages, s.par.pages+uint64(i))
				break
			}
		}
	}
	return commit.NewPageSet(pages...)
}

// pageSet converts ept's sorted page list.
func pageSet(pages []uint64) commit.PageSet {
	s, err := commit.PageSetFromSorted(pages)
	if err != nil {
		panic(fmt.Sprintf("ept returned an unsorted page set: %v", err))
	}
	return s
}

// allPages is every RAM page.
func allPages(n uint64) commit.PageSet {
	p := make([]uint64, n)
	for i := range p {
		p[i] = uint64(i)
	}
	return pageSet(p)
}

// closeFD closes a file descriptor, ignoring errors (teardown).
func closeFD(fd int) { unix.Close(fd) }
