package session

// Page breakpoints: the debugger's breakpoints and watchpoints on hardware
// virtualization without an instruction counter (SVM/VMX; the hook's
// pages flag), where they are made by taking the page away rather than
// by the debug registers.
//
// Why: in the emulated SVM host, KVM_GUESTDBG_USE_HW_BP never fires
// (measured for runTo, det_match.go, and again for the debugger: TestGDB's
// hbreak on __schedule was never hit, and every continue ran to the end
// of the recording), while an access to a page the VMM made inaccessible
// ends KVM_RUN with EFAULT before the instruction runs (vmm.ProtectPage),
// and single steps work. Page protection needs only nested paging or EPT,
// so the same mechanism serves real SVM/VMX hosts, where it costs one
// exit and one mprotect per instruction the vCPU runs from a page that
// holds a breakpoint (a debugger's cost, not a recording's).
//
// Before each entry that does not single-step, the pages of gdb's
// execution breakpoints and watchpoints are made inaccessible (and, while
// reverse-continue collects hits, the page of the position it collects up
// to: without a counter, positions inside one stretch between exits are
// told apart only by RIP and registers, so that position is found like a
// breakpoint). An EFAULT then stops the vCPU before an instruction that
// touched one of them: at a breakpoint's address it is a hit; anything
// else is single-stepped with the pages given back (the watched bytes
// compared after it, as for softWatch) and the run goes on.
//
// Addresses are translated through the vCPU's page tables at each entry.
// Kernel addresses are the same in every address space. A user address
// maps to another page in each program (static programs all start at
// 0x400000), and a vCPU switches to another process without an exit:
// measured in the emulated SVM host, race's second worker ran on vCPU 0
// in a stretch that had entered in the shell, where 0x4002f9 translated
// to the shell's page, and was missed while only the last translation
// was kept. So every page an address has translated to, in any of the
// debugger's replays, is kept (pageOf) and taken away in every entry. A hit is an execution of the address in
// any process, as a debug register's would be; a page that has since
// been given another use costs only extra traps.

import (
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
)

// debugPages returns the guest-physical pages to take away for v's next
// entry, without duplicates.
func (v *vcpu) debugPages(c *chunkRun) []uint64 {
	h := v.s.dbg
	var addrs []uint64
	if h.cmd.mode != modeGoto && h.cmd.mode != modeTrace {
		for _, b := range h.cmd.bps {
			addrs = append(addrs, b.addr)
		}
	}
	if h.cmd.mode == modeCollect && h.cmd.target.Chunk == h.chunk && h.cmd.target.Exits == int(c.rec.Exits) {
		addrs = append(addrs, h.cmd.target.RIP)
	}
	return v.trapPages(addrs...)
}

// trapPages notes where each of addrs translates in v's address space now
// and returns every page any of them has translated to in the
// debugger's replays (pageOf), once each.
func (v *vcpu) trapPages(addrs ...uint64) []uint64 {
	h := v.s.dbg
	var pages []uint64
	for _, a := range addrs {
		if gpa, err := v.CodeAddress(a); err == nil {
			h.pageOf.note(a, gpa)
		}
		for _, gpa := range h.pageOf.get(a) {
			if !slices.Contains(pages, gpa&^0xfff) {
				pages = append(pages, gpa&^0xfff)
			}
		}
	}
	return pages
}

// maxPagesPerAddr bounds the pages kept for one breakpoint address: one
// per program mapped there that an entry has seen (static programs all
// start at 0x400000); the oldest goes first.
const maxPagesPerAddr = 16

// bpPages keeps, for each breakpoint address, the guest-physical
// addresses it has translated to. The debugger's replays share one: a
// replay from a checkpoint may never see the address mapped in the
// process that runs it before it does (measured in the emulated SVM
// host: reverse-continue from the end of a race recording, starting from
// the checkpoint before the second worker's chunk, missed that hit and
// went back to the first), while the translations are the recording's,
// the same in every replay of it.
type bpPages struct {
	mu sync.Mutex
	m  map[uint64][]uint64
}

func newBPPages() *bpPages { return &bpPages{m: map[uint64][]uint64{}} }

// note keeps gpa among the pages addr has translated to.
func (p *bpPages) note(addr, gpa uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.m[addr]
	for _, g := range list {
		if g == gpa {
			return
		}
	}
	if len(list) == maxPagesPerAddr {
		list = list[1:]
	}
	p.m[addr] = append(list, gpa)
}

// get is addr's pages.
func (p *bpPages) get(addr uint64) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.m[addr]...)
}

// protectPages takes pages away (none) or gives them back.
func (v *vcpu) protectPages(pages []uint64, none bool) error {
	for _, p := range pages {
		if err := v.ProtectPage(p, none); err != nil {
			return err
		}
	}
	return nil
}

// enterPaged is one entry with pages taken away, bounded by d when d > 0
// (enterTimed); it gives them back before it returns, and reports whether
// the entry ended by touching one of them (EFAULT) rather than by an exit
// or a kick.
func (v *vcpu) enterPaged(pages []uint64, d time.Duration) (trapped bool, err error) {
	if err := v.protectPages(pages, true); err != nil {
		return false, err
	}
	if d > 0 {
		var timerErr error
		if err, timerErr = v.enterTimed(d); timerErr != nil {
			err = timerErr
		}
	} else {
		err = v.Enter()
	}
	if perr := v.protectPages(pages, false); perr != nil {
		return false, perr
	}
	if len(pages) > 0 && errors.Is(err, unix.EFAULT) {
		return true, nil
	}
	return false, err
}

// pageTrap handles an entry that touched a taken page: the vCPU stands
// before the instruction that did. It stops at a breakpoint or at
// reverse-continue's position, else has the next entry single-step that
// instruction (debugExit then looks at the watched bytes).
func (v *vcpu) pageTrap(c *chunkRun) error {
	h := v.s.dbg
	pos, err := v.debugPosition(c)
	if err != nil {
		return err
	}
	if h.interrupt.Load() {
		return v.pause(c, pos, gdbstub.Stop{Reason: gdbstub.StopInterrupt, Thread: v.id})
	}
	if h.cmd.mode == modeCollect && h.reached(pos) {
		return v.pause(c, pos, gdbstub.Stop{Thread: v.id})
	}
	hit, st := h.classify(0, pos, v.id)
	if hit == nil {
		h.pageStep[v.id] = true
		return nil
	}
	h.skip[v.id] = pos.RIP
	if h.cmd.mode == modeCollect {
		h.hits = append(h.hits, debugHit{pos: pos, stop: st})
		return nil
	}
	return v.pause(c, pos, st)
}
