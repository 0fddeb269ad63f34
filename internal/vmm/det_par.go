package vmm

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
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/chunk"
	"github.com/samsara-vmm/samsara/internal/commit"
	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/log"
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
	// views[i] is vCPU i's private view of guest memory.
	views []ept.View
	// vms[i] is vCPU i's KVM VM (its own shadow page tables).
	vms []int
	// pages is the number of RAM pages; page pages+i stands for vCPU i's
	// local APIC in page sets.
	pages uint64
	// committer orders the chunks.
	committer *commit.Committer

	// commitMu serializes a chunk's commit from its conflict check to the
	// end of its exit handling, so that writes made while handling the
	// exit join its write set before any later chunk is checked.
	commitMu sync.Mutex

	// exclusiveClaimed is set while a vCPU waits to run a chunk alone:
	// other chunks are then abandoned at their next kick (see
	// commit.Config.ExclusiveWait).
	exclusiveClaimed atomic.Bool

	// waiting counts vCPUs waiting to become runnable; guarded by m.mu.
	waiting int
	// cond (on m.mu) wakes waiting vCPUs after every commit and stop.
	cond *sync.Cond

	// running[i] is vCPU i's running chunk, for early conflicts
	// (det_early.go).
	running []runningChunk
	// enders[i] decides where vCPU i's chunks end (internal/chunk).
	enders []*chunk.Ender
}

// debugSquashAll (SAMSARA_DEBUG_SQUASH_ALL=1) squashes every chunk once
// before committing it: a replay of such a recording checks that a squash
// leaves no trace.
var debugSquashAll = os.Getenv("SAMSARA_DEBUG_SQUASH_ALL") == "1"

// ErrTrackerUnusable is a page tracker that cannot back this machine.
var ErrTrackerUnusable = errors.New("page tracker cannot back the guest")

// rangeAttacher is what the recorder needs from a view beyond ept.View:
// guest RAM has a hole below 1 MiB, so it is two memslots over one view.
type rangeAttacher interface {
	AttachRange(vmFD int, slot uint32, gpa, off, size uint64) error
}

// newParallel creates one VM and one view per vCPU.
// Preconditions: m.mem and m.kvmFD exist; no vCPU is created yet.
func (m *Machine) newParallel() error {
	name := m.cfg.Tracker
	if name == "" {
		name = ept.DefaultName()
	}
	tr, err := ept.New(name)
	if err != nil {
		return err
	}
	p := &parallel{tracker: tr, pages: uint64(len(m.mem.mem)) / ept.PageSize, cond: sync.NewCond(&m.mu),
		running: make([]runningChunk, m.cfg.CPUs)}
	m.par = p
	for i := 0; i < m.cfg.CPUs; i++ {
		vm, err := kvmsys.CreateVM(m.kvmFD)
		if err != nil {
			return fmt.Errorf("create VM of vcpu %d: %w", i, err)
		}
		p.vms = append(p.vms, vm)
		view, err := tr.NewView(m.mem.fd, uint64(len(m.mem.mem)))
		if err != nil {
			return fmt.Errorf("%s view of vcpu %d: %w", name, i, err)
		}
		p.views = append(p.views, view)
		ra, ok := view.(rangeAttacher)
		if !ok {
			return fmt.Errorf("tracker %s: %w (it has no AttachRange)", name, ErrTrackerUnusable)
		}
		if err := ra.AttachRange(vm, 0, 0, 0, lowMemEnd); err != nil {
			return fmt.Errorf("tracker %s: %w: %v", name, ErrTrackerUnusable, err)
		}
		if err := ra.AttachRange(vm, 1, highMemStart, highMemStart, uint64(len(m.mem.mem))-highMemStart); err != nil {
			return fmt.Errorf("tracker %s: %w: %v", name, ErrTrackerUnusable, err)
		}
	}
	return nil
}

// close releases the views and VMs (after the vCPUs are closed).
func (p *parallel) close() {
	for _, v := range p.views {
		v.Close()
	}
	for _, fd := range p.vms {
		closeFD(fd)
	}
	p.views, p.vms = nil, nil
}

// vmFor returns the VM vCPU id belongs to.
func (m *Machine) vmFor(id int) int {
	if m.par != nil {
		return m.par.vms[id]
	}
	return m.vmFD
}

// RecordParallel runs the guest with the parallel recorder until it powers
// off, appending chunk records in commit order, a final digest and the end
// record to w. The machine must have been built with Config.Parallel.
func (m *Machine) RecordParallel(w RecordSink) (Result, error) {
	if m.par == nil {
		return Result{}, fmt.Errorf("parallel recording needs a machine built with Parallel set")
	}
	if !m.cfg.Deterministic {
		return Result{}, fmt.Errorf("record needs a machine built with Deterministic set")
	}
	if err := m.openDet(); err != nil {
		return Result{}, err
	}
	c, err := commit.New(commit.Config{VCPUs: len(m.vcpus), InitialBudget: parBudget, MinBudget: parMinBudget,
		ExclusiveWait: func(claimant int) {
			m.par.exclusiveClaimed.Store(true)
			for _, v := range m.vcpus {
				if v.id != claimant {
					v.kick()
				}
			}
		}}, m.log)
	if err != nil {
		return Result{}, err
	}
	m.par.committer = c
	for range m.vcpus {
		m.par.enders = append(m.par.enders, m.newEnder())
	}
	m.started = time.Now()
	m.det0 = m.clock.vt
	errs := make(chan error, len(m.vcpus))
	for _, v := range m.vcpus {
		go func(v *vcpu) { errs <- v.parLoop(w) }(v)
	}
	var runErr error
	for range m.vcpus {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
			m.mu.Lock()
			m.stop(m.status, err)
			m.par.cond.Broadcast()
			m.mu.Unlock()
			c.Close()
		}
	}
	c.Close()
	m.mu.Lock()
	m.stop(m.status, runErr)
	m.mu.Unlock()
	if m.err != nil {
		return Result{ExitStatus: m.status, Elapsed: time.Since(m.started)}, m.err
	}
	return m.finishRecording(w, m.recorderStats())
}

// recorderStats is the log record of the committer's counters.
func (m *Machine) recorderStats() *log.RecorderStats {
	st := m.par.committer.Stats()
	rs := &log.RecorderStats{
		Tracker:    m.par.tracker.Name(),
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
func (m *Machine) ParallelStats() (commit.Stats, bool) {
	if m.par == nil || m.par.committer == nil {
		return commit.Stats{}, false
	}
	return m.par.committer.Stats(), true
}

// parLoop is a vCPU's goroutine in the parallel recorder: it runs chunks
// until the machine stops. It returns nil on a normal stop.
func (v *vcpu) parLoop(w RecordSink) error {
	lockThread(v)
	m := v.m
	for {
		ok, err := v.waitRunnable()
		if err != nil || !ok {
			return err
		}
		tx, err := m.par.committer.Begin(v.id)
		if err != nil {
			if m.isStopped() {
				return nil
			}
			return err
		}
		if err := v.parChunk(tx, w); err != nil {
			if m.isStopped() && errors.Is(err, commit.ErrClosed) {
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
	m := v.m
	p := m.par
	m.mu.Lock()
	defer m.mu.Unlock()
	p.waiting++
	defer func() { p.waiting-- }()
	for {
		if m.isStopped() {
			return false, nil
		}
		if v.runnableLocked() {
			return true, nil
		}
		if p.waiting == len(m.vcpus) && !m.anyRunnableLocked() {
			if !m.advanceIdleLocked() {
				return false, errNoProgress
			}
			p.cond.Broadcast()
			continue
		}
		p.cond.Wait()
	}
}

// anyRunnableLocked reports whether some vCPU can run.
// Preconditions: m.mu must be held.
func (m *Machine) anyRunnableLocked() bool {
	for _, v := range m.vcpus {
		if v.runnableLocked() {
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

// parChunk runs one chunk of v, commits it or squashes it, and on commit
// handles its exit and appends its record, in commit order.
func (v *vcpu) parChunk(tx *commit.Txn, w RecordSink) error {
	m := v.m
	view := m.par.views[v.id]
	if err := v.beginChunk(); err != nil {
		tx.Abort()
		return err
	}
	snap, err := v.snapshot()
	if err != nil {
		tx.Abort()
		return fmt.Errorf("snapshot at chunk start: %w", err)
	}
	start, err := v.kernelInsns()
	if err != nil {
		tx.Abort()
		return err
	}
	v.det.last = start
	// The injection decision below depends on this vCPU's local APIC; if
	// it could inject (or did), the chunk reads the APIC's pseudo-page.
	m.mu.Lock()
	vec, _ := m.bus.LAPIC(v.id).PendingVector() // what injectLocked injects, if it does
	injected, err := v.injectLocked()
	m.mu.Unlock()
	if err != nil {
		tx.Abort()
		return err
	}
	readsAPIC := injected
	if !injected {
		ready, err := v.readyForInterrupt()
		if err != nil {
			tx.Abort()
			return err
		}
		readsAPIC = ready
	}
	if err := view.Begin(); err != nil {
		tx.Abort()
		return err
	}
	gen := m.par.startRunning(v.id, readsAPIC)
	defer m.par.stopRunning(v.id)
	started := time.Now()
	budget := time.Duration(tx.Budget()) * time.Microsecond
	stopWatchdog := v.startParWatchdog(started, budget)
	rec := log.Chunk{VCPU: uint32(v.id)}
	if err := v.beginBounds(injected, budget); err != nil {
		stopWatchdog()
		tx.Abort()
		return err
	}
	ender := m.par.enders[v.id]
	exited, stopped, abandoned, doomed, atBound := false, false, false, false, false
	for {
		if m.par.isDoomed(v.id, gen) {
			doomed = true // aborted and re-run (det_early.go)
			break
		}
		setImmediateExit(v.run, false)
		err := runVCPU(v.fd)
		if err == nil && v.run.ExitReason == exitDebug {
			if err := v.atBound(); err != nil {
				stopWatchdog()
				return err
			}
			atBound = true // a privilege change (det_bounds.go)
			break
		}
		if err == nil {
			exited = true
			break
		}
		if err != errInterrupted {
			stopWatchdog()
			return err
		}
		if m.isStopped() {
			stopped = true
			break
		}
		if !tx.Exclusive() && m.par.exclusiveClaimed.Load() {
			abandoned = true
			break
		}
		// Preemption and privilege-change ends: internal/chunk decides.
		if ender.MayPreempt(time.Since(started)) {
			ok, user, err := v.preemptablePoint()
			if err != nil {
				stopWatchdog()
				return err
			}
			preempt, rearm := ender.Kicked(chunk.Where{Preemptable: ok, User: user})
			if preempt {
				break
			}
			if rearm != nil {
				if err := v.armBounds(*rearm); err != nil {
					stopWatchdog()
					return err
				}
			}
		}
	}
	stopWatchdog()
	if m.tracing() {
		r, _ := kvm.GetRegs(uintptr(v.fd))
		m.log.Debug(fmt.Sprintf("PARCHUNK vcpu %d took %v injected %v armed %+v end rip %#x exited %v privilege %v doomed %v",
			v.id, time.Since(started), injected, ender.Armed(), r.RIP, exited, atBound, doomed))
	}
	m.par.stopRunning(v.id)
	if err := v.endBounds(); err != nil {
		return err
	}
	sets, err := view.End()
	if err != nil {
		return err
	}
	insns, err := v.kernelInsns()
	if err != nil {
		return err
	}
	reads := pageSet(sets.Read)
	if readsAPIC {
		reads = reads.Union(commit.NewPageSet(m.par.pages + uint64(v.id)))
	}
	ch := parSets{reads: reads, writes: pageSet(sets.Write), work: insns - start + 1}

	p := m.par
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	// A doomed chunk stopped where the kick found it, maybe in guest user
	// mode where no end point can be replayed: it is never committed, even
	// if its final page sets pass the check (det_early.go says when).
	if stopped || abandoned || doomed || m.isStopped() {
		tx.Abort()
		return v.squash(&snap, injected, vec)
	}
	if debugSquashAll && !v.debugSquashed {
		// Diagnostics: squash every chunk once (SAMSARA_DEBUG_SQUASH_ALL).
		v.debugSquashed = true
		tx.Abort()
		return v.squash(&snap, injected, vec)
	}
	v.debugSquashed = false
	res, err := tx.Commit(ch)
	if err != nil {
		v.squash(&snap, injected, vec)
		return err
	}
	if !res.Committed() {
		if m.tracing() {
			w := ch.writes.Pages()
			m.log.Debug(fmt.Sprintf("SQUASH vcpu %d: %v (reads %d, writes %d: %v)", v.id, res.Squash, ch.reads.Len(), len(w), w[:min(len(w), 32)]))
		}
		return v.squash(&snap, injected, vec)
	}
	if err := view.Commit(nil); err != nil {
		return err
	}
	if tx.Exclusive() {
		defer p.exclusiveClaimed.Store(false)
	}
	return tx.Finish(func(seq uint64) error {
		rec.Squashes = uint32(tx.Retries())
		before := m.requestedVectors()
		var devWrites commit.PageSet
		if exited {
			rec.Exits = 1
			v.tickClock()
			if v.det.last, err = v.kernelInsns(); err != nil {
				return err
			}
			if v.exitWritesRAM() {
				devWrites = allPages(p.pages)
			}
			if err := v.handleExit(); err != nil {
				return err
			}
			if err := m.cfg.NDE.Err(); err != nil {
				return err
			}
			m.mu.Lock()
			m.pollTimersLocked()
			m.mu.Unlock()
		}
		reason := log.ReasonBudget
		if atBound {
			reason = log.ReasonPrivilege
		}
		if exited {
			m.mu.Lock()
			state := v.state
			m.mu.Unlock()
			switch {
			case m.isStopped():
				reason = log.ReasonExit
			case state != stateRunning:
				reason = log.ReasonHalt
			default:
				reason = exitReason(v.run.ExitReason)
			}
		}
		rec, err = v.finishChunk(rec, reason)
		if err != nil {
			return err
		}
		m.chunkEnded(&rec)
		added := devWrites.Union(m.raisedSince(before))
		tx.AddWrites(added)
		if err := m.doomConflicting(v.id, ch.writes.Union(added), !devWrites.Empty()); err != nil {
			return err
		}
		if err := w.Append(&rec); err != nil {
			return err
		}
		m.chunksDone.Add(1)
		m.debugRecordWrites(seq-1, ch.writes.Pages())
		if m.tracing() {
			w := ch.writes.Pages()
			m.log.Debug(fmt.Sprintf("COMMIT %d vcpu %d writes %d: %v", seq-1, v.id, len(w), w[:min(len(w), 32)]))
		}
		m.mu.Lock()
		p.cond.Broadcast()
		m.mu.Unlock()
		return nil
	})
}

// squash puts v back at its chunk's start: the exit the chunk ended at
// (if any) is completed first so KVM holds no pending I/O, then the
// snapshot is restored, the injected vector requested again, and the
// chunk's private pages dropped.
func (v *vcpu) squash(snap *vcpuSnapshot, injected bool, vec uint8) error {
	if err := v.flushPendingIO(); err != nil {
		return err
	}
	if err := v.restoreArch(snap); err != nil {
		return fmt.Errorf("restore at squash: %w", err)
	}
	if debugSquashAll {
		if got, err := v.snapshot(); err == nil {
			// KVM_GET_FPU's view is not compared: it does not round-trip
			// on these hosts (kvm_unsafe.go, kvmXsave); XSAVE does.
			got.State, got.FPU = snap.State, snap.FPU
			if !reflect.DeepEqual(&got, snap) {
				fmt.Fprintf(os.Stderr, "RESTORE MISMATCH vcpu %d:\n regs %v\n sregs %v\n events %v %v\n msrs %v %v\n xsave %v\n", v.id,
					got.Regs == snap.Regs, got.Sregs == snap.Sregs, got.Events, snap.Events, got.MSRs, snap.MSRs, reflect.DeepEqual(got.Xsave, snap.Xsave))
			}
		}
	}
	if injected {
		v.m.mu.Lock()
		v.m.bus.LAPIC(v.id).Unacknowledge(vec)
		v.m.mu.Unlock()
	}
	return v.m.par.views[v.id].Discard()
}

// startParWatchdog kicks the vCPU out of KVM_RUN once the chunk has used
// its budget, and then every preemptAfter while it stays in user mode.
func (v *vcpu) startParWatchdog(started time.Time, budget time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(budget)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				v.kick()
				t.Reset(preemptAfter)
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// exitWritesRAM reports whether handling v's current exit may write guest
// memory: a virtio register write (queue notification: the device writes
// data and the used ring). Such an exit counts as writing every page, which
// squashes every chunk running beside it; disk I/O is rare.
func (v *vcpu) exitWritesRAM() bool {
	if v.run.ExitReason != exitMMIO || v.m.blk == nil {
		return false
	}
	addr, _, write := mmioExit(v.run)
	return write && addr >= virtioAddr && addr < virtioAddr+virtioSize
}

// requestedVectors snapshots every local APIC's IRR.
func (m *Machine) requestedVectors() [][8]uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][8]uint32, len(m.vcpus))
	for i := range m.vcpus {
		out[i] = m.bus.LAPIC(i).RequestedVectors()
	}
	return out
}

// raisedSince returns the APIC pseudo-pages of the vCPUs whose IRR gained
// a vector since before.
func (m *Machine) raisedSince(before [][8]uint32) commit.PageSet {
	after := m.requestedVectors()
	var pages []uint64
	for i := range after {
		for j := range after[i] {
			if after[i][j]&^before[i][j] != 0 {
				pages = append(pages, m.par.pages+uint64(i))
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

// flushPendingIO completes the I/O of the vCPU's last exit (KVM applies the
// data of a port or MMIO read at the next KVM_RUN) without running guest
// code: KVM_RUN with immediate_exit completes pending I/O, then returns
// EINTR (Documentation/virt/kvm/api.rst, immediate_exit). After it the
// registers are the guest's real state: a chunk snapshot or a digest taken
// then does not depend on when the completion would have happened.
func (v *vcpu) flushPendingIO() error {
	setImmediateExit(v.run, true)
	err := runVCPU(v.fd)
	setImmediateExit(v.run, false)
	if err == errInterrupted {
		return nil
	}
	if err != nil {
		return fmt.Errorf("complete pending I/O: %w", err)
	}
	return fmt.Errorf("completing the pending I/O of vcpu %d made another exit (reason %d)", v.id, v.run.ExitReason)
}

// closeFD closes a file descriptor, ignoring errors (teardown).
func closeFD(fd int) { unix.Close(fd) }
