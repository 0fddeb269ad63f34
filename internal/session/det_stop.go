package session

// State stops of the serialized recorder (issues 19 and 11): ending a
// chunk where no exit and no count can find it again.
//
// A chunk can end where replay finds it again: at an exit (replay counts
// exits), or, on PVM, at a point in guest kernel code (replay counts the
// emulated kernel instructions). Guest user code on PVM, and all guest
// code on hardware virtualization without a PMU, has no such point
// between two exits. A vCPU that loops there without exits (a user-mode
// spin on a flag, a computation waiting for SIGALRM) kept its turn until
// its next exit: the other vCPUs did not run, no timer interrupt reached
// it, and the guest's clock stood still (measured on PVM: alarm(1) never
// fired in a loop of 2^33 iterations; README, corpus).
//
// A state stop ends such a chunk where the watchdog's kick found it, and
// logs what replay cannot recompute without finding that instant: the
// vCPU's whole architectural state (vmm.ArchState: registers, segments,
// control registers, XSAVE, MSRs, pending events) and the contents of
// every guest page written since the chunk began (KVM's dirty log,
// vmm.Machine.DirtyPages). Replay runs the chunk through its exits as
// usual, then, instead of re-running the instructions after the last
// exit, puts that state in place: the vCPU's registers and those pages.
// The rest of memory is what replay already has, since only this vCPU ran
// and it wrote nothing else. What is lost is instruction-level replay of
// that stretch (gdb and trace see the vCPU jump from its last exit to the
// stop); what it costs is the pages in the log (a user-mode loop writes
// few; zstd compresses them).
//
// (The other design, a state-matching stop at a breakpoint, needs
// replay to stop at every pass of the stop's RIP until the state matches:
// for a counting loop such as alarm_loop's that is one breakpoint exit
// per iteration, about 10^8 per second of loop. det_match.go keeps it for
// spins whose state repeats.)
//
// A stop is taken only when the chunk has run for stateStopAfter and the
// machine needs it to end: another vCPU waits, or a timer is due by the
// time the chunk would add to the clock. Before that, nothing changes:
// chunks end at exits and, on PVM, at counted kernel points.

import (
	"bytes"
	"fmt"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// stateStopAfter is how long a chunk runs before a kick may end it at a
// state stop: ten watchdog periods (preemptAfter). Shorter chunks end at
// their exits or counted points, which cost no log bytes; a longer wait
// delays the other vCPUs and the guest's timers by as much (a timer due
// in a user-mode loop fires at most this late, measured by guest time).
// Measured on PVM, 2 vCPUs, 2026-12-07: at 20 ms corpus's
// thread_exit_busy took 23 s of guest time (at 100 ms it hit
// corpus-run's 30 s limit), but the workloads' serialized recordings
// logged 44-183 KB per guest second (blackscholes, canneal, dedup,
// raytrace; 1.4-2 KB without stops), which stopLogRate now bounds.
const stateStopAfter = 10 * preemptAfter

// stopLogRate paces one vCPU's state stops by what they cost in the log:
// after a stop whose state and pages compress to B bytes, that vCPU's
// next stop waits B/stopLogRate. 20 KB/s per vCPU keeps a 2-vCPU
// recording under the 50 KB per guest second the project targets (README,
// Benchmarks) with room for the rest of the log. A user-mode loop's stop
// is a few KB (its stack page and the kernel's tick bookkeeping: alarm_loop
// 18-57 pages, about 6 KB compressed), so it still stops every few tenths
// of a second; a computation that writes megabytes stops every few
// seconds, and its timers fire that late.
const stopLogRate = 20_000 // bytes per second

// dirtyClearEvery bounds how often a chunk start begins a new dirty-log
// period (KVM_GET_DIRTY_LOG on both RAM memslots, which write-protects
// the pages again: ept/doc.go measured 7-90 us per call on PVM). A stop
// logs the pages written since the period began, which may be a little
// before its chunk began: replay has those pages already, so writing them
// again changes nothing, and the log gains at most 10 ms of writes.
const dirtyClearEvery = 10 * time.Millisecond

// userTop is the end of the lower canonical half, where user code lives.
const userTop = 1 << 47

// maxStopPages bounds the pages of one StateStop record (8 MiB), well
// inside a log block (log.MaxBlockSize, 16 MiB); a stop that wrote more
// is split over several records, the state in the last one.
const maxStopPages = 2048

// stopsOn reports whether this serialized recording takes state stops
// (the parallel recorder's are parStopsOn's).
func (s *Session) stopsOn() bool { return s.opts.serialStops() }

// startStops turns on the dirty log a state stop reads, at the start of a
// recording.
func (s *Session) startStops() error {
	if !s.stopsOn() {
		return nil
	}
	if err := s.m.StartDirtyLog(); err != nil {
		return fmt.Errorf("state stops need KVM's dirty log (record without --state-stops goes without): %w", err)
	}
	s.dirtyCleared = time.Now()
	return nil
}

// newDirtyPeriod begins a new dirty-log period at a recorded chunk's
// start, at most every dirtyClearEvery.
func (s *Session) newDirtyPeriod() error {
	if !s.stopsOn() || time.Since(s.dirtyCleared) < dirtyClearEvery {
		return nil
	}
	_, err := s.m.DirtyPages()
	s.dirtyCleared = time.Now()
	return err
}

// timerDue reports whether a device timer's deadline has passed by the
// guest time a chunk started at started would add at its end (clock.go).
func (s *Session) timerDue(started time.Time) bool {
	next, ok := s.m.NextDeadline()
	return ok && next <= s.m.VirtualTime()+int64(time.Since(started))
}

// stopWanted is the watchdog's reason to kick a chunk for a state stop
// (besides preemptionNeeded): it ran long, and a timer is due.
func (s *Session) stopWanted(started time.Time) bool {
	return s.stopsOn() && time.Since(started) >= stateStopAfter && s.timerDue(started)
}

// stopDue reports whether the chunk, stopped by a kick (not at an exit),
// should end at a state stop now. Not after an interrupt was injected
// since the last exit: replay would have to inject it at the same
// instruction, and a stop has none.
func (v *vcpu) stopDue(c *chunkRun) bool {
	if !v.s.stopsOn() || c.inject || c.injectedSinceExit || time.Since(c.started) < stateStopAfter || time.Now().Before(v.stopNotBefore) {
		return false
	}
	return v.s.preemptionNeeded(v, c.started) || v.s.timerDue(c.started)
}

// stateStop ends the chunk where the vCPU stands, keeping the state stop
// records for the chunk's result (v.stops). It reports false, and leaves
// the chunk running, where replay could not put the state in place: on
// PVM, anywhere but user code (runToCodePage).
func (v *vcpu) stateStop(c *chunkRun) (bool, error) {
	mem := v.s.m.Memory()
	at, err := v.stopPoint(mem)
	if err != nil || at == nil {
		return false, err
	}
	pages, err := v.s.m.DirtyPages()
	if err != nil {
		return false, fmt.Errorf("state stop: %w", err)
	}
	v.s.dirtyCleared = time.Now()
	if err := v.takeStop(at, pages, mem); err != nil {
		return false, err
	}
	c.rec, err = v.finishChunk(c.rec, log.ReasonStateStop)
	v.trace("STATE-STOP vcpu %d rip %#x after %v, %d pages", v.id, at.rip, time.Since(c.started), len(pages))
	return true, err
}

// stopAt is where a state stop may end a chunk: the vCPU's state and the
// guest page its next instruction is fetched from.
type stopAt struct {
	arch     []byte // vmm.EncodeArch
	code     uint64 // guest-physical address of the code page
	rip      uint64
	exitRegs uint64 // log.StateStop.ExitRegs
}

// stopPoint reads where the vCPU stands, or nil where replay could not
// put the state in place: on PVM anywhere but user code
// (runToCodePage), and where the next fetch's page is not mapped. mem is
// guest memory as this vCPU sees it (the page tables are read there).
func (v *vcpu) stopPoint(mem []byte) (*stopAt, error) {
	arch, err := v.SaveArch()
	if err != nil {
		return nil, fmt.Errorf("state stop: %w", err)
	}
	if v.s.opts.KernelCount && (arch.Sregs.CS.Selector&3 != 3 || arch.Regs.RIP >= userTop) {
		// (PVM reports a user CS at some instructions of its entry
		// trampolines, above userTop.)
		return nil, nil
	}
	enc, err := vmm.EncodeArch(&arch)
	if err != nil {
		return nil, fmt.Errorf("state stop: %w", err)
	}
	code, err := translate(mem, arch.Sregs.CR3, arch.Regs.RIP)
	if err != nil {
		// The kick came before a fetch that will fault (the page is
		// not mapped yet): no code page to run replay to. Measured in
		// the fresh-clone make test of 2026-12-07 (true, threads2,
		// the daemon's race).
		return nil, nil
	}
	// (exitRegs stays 0 where noteExitRegs keeps none: PVM.)
	return &stopAt{arch: enc, code: code, rip: arch.Regs.RIP, exitRegs: v.exitRegs}, nil
}

// noteExitRegs keeps the hash of the registers where the chunk stands
// after an exit (or at its start), for a state stop's ExitRegs: replay
// on VMX/SVM puts a stop's state in place right there, so this is all it
// can check of the chunk's exits. Only when recording serialized chunks
// without a counter (on PVM replay runs on to the stop's code page and
// meets any exit on the way): one KVM_GET_REGS per exit.
func (v *vcpu) noteExitRegs(recording bool) error {
	if !recording || v.s.opts.KernelCount || !v.s.stopsOn() {
		return nil
	}
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	v.exitRegs = regsHash(regs)
	return nil
}

// takeStop keeps the state stop records of a stop at at (v.stops): the
// state, and the pages written (sorted page numbers, their contents in
// mem), split at maxStopPages. It paces the vCPU's next stop by their
// compressed size (stopLogRate).
func (v *vcpu) takeStop(at *stopAt, pages []uint64, mem []byte) error {
	v.stops = v.stops[:0]
	for len(pages) > 0 || len(v.stops) == 0 {
		n := min(len(pages), maxStopPages)
		r := &log.StateStop{VCPU: uint32(v.id), Pages: pages[:n:n], Data: make([]byte, 0, n*log.PageSize)}
		for _, p := range pages[:n] {
			r.Data = append(r.Data, mem[p*log.PageSize:(p+1)*log.PageSize]...)
		}
		pages = pages[n:]
		if len(pages) == 0 {
			r.Arch, r.CodePage, r.ExitRegs = at.arch, at.code/log.PageSize, at.exitRegs
		}
		v.stops = append(v.stops, r)
	}
	size := 0
	for _, r := range v.stops {
		n, err := r.CompressedSize()
		if err != nil {
			return err
		}
		size += n
	}
	v.stopNotBefore = time.Now().Add(time.Duration(size) * time.Second / stopLogRate)
	return nil
}

// parStopsOn reports whether this parallel recording takes state stops
// (Options.parallelStops). Its chunks' write sets come from the page
// tracker, not the dirty log.
func (s *Session) parStopsOn() bool { return s.opts.parallelStops() }

// parStop is the parallel recorder's state stop, tried at a kick: a chunk
// that has run for stateStopAfter in guest user code without an exit
// ends there (parRun.stop), so that what it wrote commits and its guest
// time passes (a thread that set a flag and spins on another's, or a
// loop a timer should interrupt, kept the chunk, and so its writes and
// the clock, forever). Not after an interrupt was injected at its start:
// replay would have to deliver it, and a stop has no point for that
// (its handler's EOI is an exit anyway).
func (v *vcpu) parStop(c *parRun) (bool, error) {
	if !v.s.parStopsOn() || c.injected || time.Since(c.started) < stateStopAfter || time.Now().Before(v.stopNotBefore) {
		return false, nil
	}
	// Read through the chunk's view: its page-table reads are tracked
	// like the guest's.
	at, err := v.stopPoint(v.s.par.views[v.id].Mem())
	if err != nil || at == nil {
		return false, err
	}
	c.stop = at
	return true, nil
}

// pendingStop gathers, in replay, the state stop records that precede
// the chunk they end.
type pendingStop struct {
	vcpu     uint32
	arch     []byte
	code     uint64
	exitRegs uint64
	recs     []*log.StateStop
	pages    int
}

// add takes one state stop record; a record after the one with the state
// belongs to no chunk.
func (p *pendingStop) add(r *log.StateStop) error {
	if p.arch != nil || len(p.recs) > 0 && r.VCPU != p.vcpu {
		return fmt.Errorf("recording is corrupt: a state stop record of vcpu %d follows another stop's records", r.VCPU)
	}
	p.vcpu = r.VCPU
	p.recs = append(p.recs, r)
	p.pages += len(r.Pages)
	if len(r.Arch) > 0 {
		p.arch, p.code, p.exitRegs = r.Arch, r.CodePage, r.ExitRegs
	}
	return nil
}

// check compares the pending records with the chunk about to replay.
func (p *pendingStop) check(i int, want *log.Chunk) error {
	stop := want.Reason == log.ReasonStateStop
	switch {
	case stop && p.arch == nil:
		return fmt.Errorf("recording is corrupt: chunk %d (vcpu %d) ended at a state stop, but no state stop record precedes it", i, want.VCPU)
	case !stop && len(p.recs) > 0:
		return fmt.Errorf("recording is corrupt: state stop records of vcpu %d precede chunk %d, which ended at %v", p.vcpu, i, want.Reason)
	case stop && p.vcpu != want.VCPU:
		return fmt.Errorf("recording is corrupt: chunk %d of vcpu %d follows a state stop of vcpu %d", i, want.VCPU, p.vcpu)
	}
	return nil
}

// applyStateStop ends a replayed chunk at its state stop: after the
// chunk's exits, the recorded state replaces what the instructions after
// the last exit did.
func (v *vcpu) applyStateStop(c *chunkRun) error {
	p := &v.s.stop
	defer func() { *p = pendingStop{} }()
	if p.exitRegs != 0 {
		// The recorder hashed the registers after the chunk's last
		// exit (log.StateStop.ExitRegs): replay must stand there too.
		regs, err := v.Regs()
		if err != nil {
			return err
		}
		if h := regsHash(regs); h != p.exitRegs {
			return &DivergenceError{VCPU: v.id, What: "registers after the last exit before a state stop",
				Want: fmt.Sprintf("registers %016x after %d exits", p.exitRegs, c.rec.Exits), Got: fmt.Sprintf("registers %016x at RIP %#x", h, regs.RIP)}
		}
	}
	if c.inject {
		// The recorder's entry after the last exit asked the LAPIC for
		// an interrupt too (and stopped only if none was injected).
		if err := v.injectAtEntry(c); err != nil {
			return err
		}
		if c.injectedNow {
			return &DivergenceError{VCPU: v.id, What: "interrupt before a state stop", Want: "none injected", Got: fmt.Sprintf("vector %#x injected", c.injections[len(c.injections)-1].vec)}
		}
	}
	// The last exit's I/O completes first, or KVM would apply it over
	// the restored registers at the next KVM_RUN.
	if err := v.FlushPendingIO(); err != nil {
		return err
	}
	arch, err := vmm.DecodeArch(p.arch)
	if err != nil {
		return fmt.Errorf("recording is corrupt: state stop of vcpu %d: %w", v.id, err)
	}
	if v.s.opts.KernelCount {
		// PVM: the privilege level cannot change through
		// KVM_SET_SREGS once a vCPU has run (pvm_set_segment asks for
		// a triple fault), and the last exit may have been in kernel
		// mode. Run the vCPU on to its first fetch from the stop's
		// code page in user mode, an instant of the recording's own
		// path on the way to the stop, and put the state in place
		// there.
		if err := v.runToCodePage(p.code*log.PageSize, arch.Sregs.CS.Selector&3); err != nil {
			return err
		}
	}
	if err := v.RestoreArch(&arch); err != nil {
		return fmt.Errorf("state stop: restore vcpu %d: %w", v.id, err)
	}
	mem := v.s.m.Memory()
	changed := 0
	e := v.s.exp // a trace being written (trace_expand.go)
	traced := e != nil && e.on && e.inWindow(e.index)
	for _, r := range p.recs {
		for i, pg := range r.Pages {
			if (pg+1)*log.PageSize > uint64(len(mem)) {
				return fmt.Errorf("recording is corrupt: state stop page %#x beyond guest memory (%d MiB)", pg, len(mem)>>20)
			}
			data := r.Data[i*log.PageSize : (i+1)*log.PageSize]
			page := mem[pg*log.PageSize : (pg+1)*log.PageSize]
			if !bytes.Equal(page, data) {
				copy(page, data)
				changed++
			}
			if traced {
				// Memory written without traced instructions, as a
				// device's DMA is: a trace reader takes these bytes
				// as stored here.
				if err := e.Set.DMA(v.id, uint32(e.chunk), e.index, trace.DMA{PA: pg * log.PageSize, Data: data}); err != nil {
					return err
				}
			}
		}
	}
	if changed > 0 {
		// Some may be guest page tables, which KVM may have shadowed
		// (PVM) or cached in the guest TLB: it must not go on with
		// what it built from their old contents.
		if err := v.s.m.ForgetTranslations(); err != nil {
			return fmt.Errorf("state stop: %w", err)
		}
	}
	v.trace("STATE-STOP vcpu %d replayed: rip %#x, %d pages, %d changed", v.id, arch.Regs.RIP, p.pages, changed)
	return nil
}

// codePageTries bounds the entries runToCodePage makes: each ends at a
// fetch from the page (or an access to it) or after runToCheckEvery; the
// kernel may touch the page before user code runs from it.
const codePageTries = 64

// codePageAccesses bounds the kernel accesses to the page that
// runToCodePage completes on the way (CompleteTrappedAccess): each moves
// at most 8 bytes, so this is the page read or written byte by byte
// twice over, as a kernel filling it from the page cache might.
const codePageAccesses = 2 * 4096

// runToCodePage runs the vCPU, after the chunk's last exit, until it
// stands at an instruction of the guest page at gpa with privilege level
// cpl: the page is made inaccessible to KVM (vmm.ProtectPage), so the
// first access ends KVM_RUN with EFAULT before it happens; an access at
// another privilege level is single-stepped with the page given back.
func (v *vcpu) runToCodePage(gpa uint64, cpl uint16) error {
	defer v.SetGuestDebug(0, nil)
	accesses := 0
	for try := 0; try < codePageTries; try++ {
		trapped, exited, err := v.enterTrapped(gpa) // det_match.go
		switch {
		case err != nil:
			return err
		case exited && accesses < codePageAccesses && v.CompleteTrappedAccess(gpa):
			// The emulated guest kernel touched the page (PVM): not
			// the fetch this waits for, and not an exit of the chunk.
			accesses++
			try--
			continue
		case exited:
			return &DivergenceError{VCPU: v.id, What: "run to a state stop", Want: "no exit before the stop", Got: v.ExitSummary()}
		case !trapped:
			if v.s.m.IsStopped() {
				return errMachineStopped
			}
			continue
		}
		sr, err := v.Sregs()
		if err != nil {
			return err
		}
		if sr.CS.Selector&3 == cpl {
			return nil
		}
		regs, err := v.Regs()
		if err != nil {
			return err
		}
		if _, err := v.stepTowards(regs.RIP, true, regs); err != nil {
			return err
		}
	}
	return &DivergenceError{VCPU: v.id, What: "run to a state stop", Want: fmt.Sprintf("a fetch from guest page %#x at CPL %d", gpa, cpl), Got: fmt.Sprintf("none in %d tries", codePageTries)}
}
