package ept

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bobuhiro11/gokvm/kvm"

	"github.com/samsara-vmm/samsara/internal/kvmtest"
)

// conformSize is the guest memory of the conformance tests: 4 MiB, two
// 2 MiB identity pages.
const conformSize = 4 << 20

// Page-table pages of the layout: the CPU (under shadow paging, KVM for
// it) reads them on a walk and writes accessed/dirty bits into them, a
// real guest write; they may appear in both sets, and after the first
// chunk KVM's cached shadow translations may spare the walk, so they need
// not appear at all.
var ptPages = []uint64{kvmtest.PML4Addr / PageSize, kvmtest.PDPTAddr / PageSize, kvmtest.PDAddr / PageSize}

// codePage is where the guest code is: always read.
const codePage = kvmtest.CodeAddr / PageSize

// tssPage is the page of the TSS (TR.base, 0 as KVM initialises it).
// Under PVM every entry to guest CPL3 reads the guest TSS (measured: the
// page follows TR.base, not GDTR, IDTR or LDTR), so CPL3 chunks read it;
// it is a guest structure that a real CPU reads on the next CPL3->CPL0
// transition, so it is a documented extra of the read set.
const tssPage = 0

// checkSets asserts the sets of one chunk doing p: never a missing page;
// extras only page-table pages, and for a non-exact backend any extra in
// the read set (fault-around) but none in the write set.
func checkSets(t *testing.T, s Sets, p pattern, exact, user bool) {
	t.Helper()
	if !isSorted(s.Read) || !isSorted(s.Write) {
		t.Fatalf("sets not sorted/unique: %v", s)
	}
	wantRead := []uint64{codePage, p.a, p.b, p.c, p.d}
	wantWrite := []uint64{p.c, p.d}
	for _, w := range wantRead {
		if !slices.Contains(s.Read, w) {
			t.Errorf("read set %#x misses page %#x", s.Read, w)
		}
	}
	for _, w := range wantWrite {
		if !slices.Contains(s.Write, w) {
			t.Errorf("write set %#x misses page %#x", s.Write, w)
		}
	}
	for _, w := range s.Write {
		if !slices.Contains(wantWrite, w) && !slices.Contains(ptPages, w) {
			t.Errorf("write set %#x has extra page %#x", s.Write, w)
		}
		if !slices.Contains(s.Read, w) {
			t.Errorf("written page %#x not in read set %#x", w, s.Read)
		}
	}
	if exact {
		for _, r := range s.Read {
			if !slices.Contains(wantRead, r) && !slices.Contains(ptPages, r) && !(user && r == tssPage) {
				t.Errorf("read set %#x has extra page %#x", s.Read, r)
			}
		}
	}
}

func fmtSets(s Sets) string { return fmt.Sprintf("read %#x write %#x", s.Read, s.Write) }

// TestConformance: the one test every backend passes. A guest reads A and
// B, writes C, reads and writes D, leaves E (next to them) untouched; the
// sets must be exact (up to the page-table pages); Commit publishes C and
// D; a discarded chunk leaves nothing; a later chunk's sets are exact
// again (the reset after Commit/Discard worked).
func TestConformance(t *testing.T) {
	for _, user := range []bool{false, true} {
		cpl := map[bool]string{false: "cpl0", true: "cpl3"}[user]
		t.Run(cpl, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, tr Tracker, exact bool) {
				memfd, canon := newMemfd(t, conformSize)
				fillCanonical(canon, accessCode)
				m := newMachine(t, tr, memfd, conformSize, user)
				const e = 0x25 // untouched, in the same 16-page fault-around window as A..D
				p := pattern{a: 0x21, b: 0x22, c: 0x23, d: 0x24}

				s, rax, r8 := m.runChunk(t, p, 7)
				t.Logf("chunk 1: %s", fmtSets(s))
				checkSets(t, s, p, exact, user)
				if exact && slices.Contains(s.Read, e) {
					t.Errorf("untouched page %#x in read set", e)
				}
				if rax != markerOf(p.a) || r8 != markerOf(p.b) {
					t.Errorf("guest read %#x %#x, want the markers %#x %#x", rax, r8, markerOf(p.a), markerOf(p.b))
				}
				if word(canon, p.c) != markerOf(p.c) || word(canon, p.d) != markerOf(p.d) {
					t.Errorf("canonical changed before Commit")
				}
				if err := m.view.Commit(nil); err != nil {
					t.Fatalf("Commit: %v", err)
				}
				if word(canon, p.c) != 7 || word(canon, p.d) != markerOf(p.d)+7 {
					t.Errorf("after Commit canonical C=%#x D=%#x, want 7 and %#x", word(canon, p.c), word(canon, p.d), markerOf(p.d)+7)
				}

				// A squashed chunk: its writes vanish.
				p2 := pattern{a: 0x31, b: 0x32, c: 0x33, d: 0x34}
				s, _, _ = m.runChunk(t, p2, 9)
				t.Logf("chunk 2: %s", fmtSets(s))
				checkSets(t, s, p2, exact, user)
				if err := m.view.Discard(); err != nil {
					t.Fatalf("Discard: %v", err)
				}
				if word(canon, p2.c) != markerOf(p2.c) || word(m.view.Mem(), p2.c) != markerOf(p2.c) {
					t.Errorf("discarded write visible: canonical %#x view %#x", word(canon, p2.c), word(m.view.Mem(), p2.c))
				}
				m.view.Discard() // drop the page the check above mapped

				// The first pattern again: exact sets, and it reads what
				// chunk 1 committed (D was incremented).
				p3 := pattern{a: p.d, b: p.b, c: p.c, d: p.a}
				s, rax, _ = m.runChunk(t, p3, 1)
				t.Logf("chunk 3: %s", fmtSets(s))
				checkSets(t, s, p3, exact, user)
				if rax != markerOf(p.d)+7 {
					t.Errorf("chunk 3 read D=%#x, want the committed %#x", rax, markerOf(p.d)+7)
				}
				if err := m.view.Commit([]uint64{p3.c}); err != nil {
					t.Fatalf("partial Commit: %v", err)
				}
				if word(canon, p3.d) != markerOf(p3.d) {
					t.Errorf("page left out of Commit reached canonical")
				}
				if err := m.view.Begin(); err != nil {
					t.Fatalf("Begin after Commit: %v", err)
				}
				if s, err := m.view.End(); err != nil || len(s.Read) != 0 {
					t.Errorf("empty chunk after Commit: %s, %v (the reset left pages mapped)", fmtSets(s), err)
				}
				m.view.Discard()
			})
		})
	}
}

// TestIsolation: a write in view 1 is invisible to canonical memory and
// to view 2 until Commit, visible after; Discard restores canonical.
func TestIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tr Tracker, exact bool) {
		memfd, canon := newMemfd(t, conformSize)
		fillCanonical(canon, accessCode)
		m1 := newMachine(t, tr, memfd, conformSize, true)
		m2 := newMachine(t, tr, memfd, conformSize, true)
		const c, scratch1, scratch2 = 0x40, 0x50, 0x60

		// vCPU 1 writes C.
		m1.runChunk(t, pattern{a: scratch1, b: scratch1, c: c, d: scratch1}, 0x1111)
		if word(canon, c) != markerOf(c) {
			t.Errorf("view 1's write reached canonical before Commit")
		}
		// vCPU 2 reads C: the old value.
		_, rax, _ := m2.runChunk(t, pattern{a: c, b: c, c: scratch2, d: scratch2}, 0)
		if rax != markerOf(c) {
			t.Errorf("view 2 read %#x before view 1's Commit, want %#x", rax, markerOf(c))
		}
		m2.view.Discard()
		if err := m1.view.Commit(nil); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		_, rax, _ = m2.runChunk(t, pattern{a: c, b: c, c: scratch2, d: scratch2}, 0)
		if rax != 0x1111 {
			t.Errorf("view 2 read %#x after view 1's Commit, want 0x1111", rax)
		}
		m2.view.Discard()

		// vCPU 1 overwrites C and is squashed: C is the committed value
		// again in view 1.
		m1.runChunk(t, pattern{a: scratch1, b: scratch1, c: c, d: scratch1}, 0x2222)
		if err := m1.view.Discard(); err != nil {
			t.Fatalf("Discard: %v", err)
		}
		_, rax, _ = m1.runChunk(t, pattern{a: c, b: c, c: scratch1, d: scratch1}, 0)
		if rax != 0x1111 || word(canon, c) != 0x1111 {
			t.Errorf("after Discard view 1 reads %#x, canonical %#x; want 0x1111", rax, word(canon, c))
		}
		m1.view.Discard()
	})
}

// TestDirtyLogWriteSets: KVM's dirty log and the view's page tables agree
// on the guest's writes; a write the host makes to the view (as device
// emulation would) is only in the page tables' answer.
func TestDirtyLogWriteSets(t *testing.T) {
	kvmtest.RequireKVM(t)
	if err := checkDirtyLog(); err != nil {
		t.Skipf("dirtylog unsupported: %v", err)
	}
	memfd, canon := newMemfd(t, conformSize)
	fillCanonical(canon, accessCode)
	m := newMachine(t, &dirtyLogTracker{privateTracker{name: DirtyLog, uffdWP: true}}, memfd, conformSize, true)
	const hostWritten = 0x70
	m.view.Mem()[hostWritten*PageSize] = 1 // a host write to the view: End reports it (it stays until the reset)
	s, _, _ := m.runChunk(t, pattern{a: 0x21, b: 0x22, c: 0x23, d: 0x24}, 1)
	pm := m.view.(*dirtyLogView).pagemapWrite
	t.Logf("dirty log %#x, pagemap %#x", s.Write, pm)
	if slices.Contains(s.Write, hostWritten) || !slices.Contains(pm, hostWritten) {
		t.Errorf("host write to page %#x: dirty log %v, pagemap %v; want only pagemap", hostWritten, s.Write, pm)
	}
	if !slices.Equal(slices.DeleteFunc(slices.Clone(pm), func(p uint64) bool { return p == hostWritten }), s.Write) {
		t.Errorf("guest write sets differ: dirty log %#x, pagemap %#x", s.Write, pm)
	}
	m.view.Discard()
}

// TestStateErrors: the lifecycle is enforced.
func TestStateErrors(t *testing.T) {
	memfd, _ := newMemfd(t, conformSize)
	v, err := (&privateTracker{name: PrivatePagemap, uffdWP: true}).NewView(memfd, conformSize)
	if err != nil {
		t.Skipf("no private view here: %v", err)
	}
	defer v.Close()
	if _, err := v.End(); !errors.Is(err, ErrState) {
		t.Errorf("End before Begin: %v, want ErrState", err)
	}
	if err := v.Commit(nil); !errors.Is(err, ErrState) {
		t.Errorf("Commit before End: %v, want ErrState", err)
	}
	v.Begin()
	if err := v.Begin(); !errors.Is(err, ErrState) {
		t.Errorf("Begin twice: %v, want ErrState", err)
	}
	v.Mem()[5*PageSize] = 1
	if _, err := v.End(); err != nil {
		t.Fatal(err)
	}
	if err := v.Commit([]uint64{6}); !errors.Is(err, ErrNotWritten) {
		t.Errorf("Commit of an unwritten page: %v, want ErrNotWritten", err)
	}
	if err := v.Commit([]uint64{5}); err != nil {
		t.Errorf("Commit: %v", err)
	}
}

// TestTouched: a running chunk's view answers the early conflict probe
// (Prober) from its pagemap: pages the guest read or wrote are touched,
// pages it left alone are not (exact backends), and after the chunk's
// pages are dropped nothing is.
func TestTouched(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tr Tracker, exact bool) {
		memfd, canon := newMemfd(t, conformSize)
		fillCanonical(canon, accessCode)
		m := newMachine(t, tr, memfd, conformSize, true)
		pr, ok := m.view.(Prober)
		if !ok {
			t.Fatalf("backend %s views are not Probers", tr.Name())
		}
		p := pattern{a: 0x21, b: 0x22, c: 0x23, d: 0x24}
		const untouched, far = 0x25, 0x300
		if err := m.view.Begin(); err != nil {
			t.Fatal(err)
		}
		m.runTo(t, &kvm.Regs{RIP: kvmtest.CodeAddr, RFLAGS: rflags, RSP: kvmtest.StackTop,
			RSI: p.a * PageSize, RDI: p.b * PageSize, RDX: p.c * PageSize, RCX: p.d * PageSize, RBX: 1})
		probe := func(pages ...uint64) bool {
			t.Helper()
			got, err := pr.Touched(pages)
			if err != nil {
				t.Fatalf("Touched(%#x): %v", pages, err)
			}
			return got
		}
		for _, pg := range []uint64{p.a, p.b, p.c, p.d} {
			if !probe(pg) {
				t.Errorf("page %#x the guest accessed: not touched", pg)
			}
		}
		if !probe(far, p.c) || !probe(untouched, p.d, far) {
			t.Errorf("a set holding an accessed page: not touched")
		}
		if exact && probe(untouched) {
			t.Errorf("page %#x the guest did not access: touched", uint64(untouched))
		}
		if probe(far, far+1, far+2) {
			t.Errorf("pages far from the guest's: touched")
		}
		if _, err := pr.Touched([]uint64{conformSize / PageSize}); err == nil {
			t.Errorf("Touched of a page past the view: no error")
		}
		if _, err := m.view.End(); err != nil {
			t.Fatal(err)
		}
		if err := m.view.Discard(); err != nil {
			t.Fatal(err)
		}
		if probe(p.a, p.b, p.c, p.d) {
			t.Errorf("pages still touched after Discard")
		}
	})
}
