package session

// Early conflicts (parallel recorder): a chunk that has touched a page
// which a chunk committed after its start wrote is certain to be squashed
// at its own commit (internal/commit checks exactly that). The commit that
// makes it so looks at every other running chunk's view (ept.Prober) and
// stops the doomed ones at once instead of letting them run on: without a
// PMU a chunk in guest user code has no budget and may run for seconds
// (det_bounds.go), all of it lost at the squash. A doomed chunk is never
// committed, so its end point, which may lie in user mode, is never
// logged: it is aborted and re-run from its start, which is always safe.
// It used to go through its ordinary commit, expected to find the
// conflict; but the probe's "touched" can hold a page that the chunk's
// final page sets do not (seen once in make test on a busy machine:
// TestVMDisk/parallel/diskrw ended with "internal error: chunk stopped by
// an early conflict passed its commit check"), so the commit is skipped
// and the re-run is not counted as a squash.

import (
	"fmt"
	"sync/atomic"

	"github.com/samsara-vmm/samsara/internal/commit"
	"github.com/samsara-vmm/samsara/internal/ept"
)

// runningChunk is what the other vCPUs' commits know of a vCPU's running
// chunk.
type runningChunk struct {
	// gen numbers the vCPU's chunks; active is set while the chunk runs
	// (from its view's Begin to its End).
	gen    atomic.Uint64
	active atomic.Bool
	// readsAPIC: the chunk read its local APIC's pseudo-page.
	readsAPIC atomic.Bool
	// doomed is the gen of a chunk found doomed (0: none).
	doomed atomic.Uint64
}

// startRunning marks v's chunk as running; it returns the chunk's gen.
func (p *parallel) startRunning(id int, readsAPIC bool) uint64 {
	r := &p.running[id]
	g := r.gen.Add(1)
	r.readsAPIC.Store(readsAPIC)
	r.active.Store(true)
	return g
}

// stopRunning marks v's chunk as no longer running.
func (p *parallel) stopRunning(id int) { p.running[id].active.Store(false) }

// isDoomed reports whether v's chunk gen was found doomed.
func (p *parallel) isDoomed(id int, gen uint64) bool { return p.running[id].doomed.Load() == gen }

// doomConflicting stops every other running chunk that has touched a page
// in writes (all: every page) or, for a chunk that read its APIC, whose
// APIC pseudo-page is in writes. Called by the committing chunk's ordered
// hook, after its writes are complete (AddWrites), with commitMu held.
// Off (Options.EarlyConflicts false: record --early-conflicts=false, for
// comparisons in tests/bench), doomed chunks run to their end.
func (s *Session) doomConflicting(self int, writes commit.PageSet, all bool) error {
	p := s.par
	if !s.opts.EarlyConflicts {
		return nil
	}
	ram := writes.Pages()
	// RAM pages come first (sorted); APIC pseudo-pages follow them.
	n := 0
	for n < len(ram) && ram[n] < p.pages {
		n++
	}
	ram = ram[:n]
	for _, u := range s.vcpus {
		r := &p.running[u.id]
		if u.id == self || !r.active.Load() {
			continue
		}
		g := r.gen.Load()
		doomed := all || (r.readsAPIC.Load() && writes.Contains(p.pages+uint64(u.id)))
		if !doomed && len(ram) > 0 {
			pr, ok := p.views[u.id].(ept.Prober)
			if !ok {
				continue
			}
			t, err := pr.Touched(ram)
			if err != nil {
				return fmt.Errorf("early conflict check of vcpu %d: %w", u.id, err)
			}
			doomed = t
		}
		// The chunk may have ended (and another begun) meanwhile: only
		// the chunk that was probed is doomed.
		if doomed && s.tracing() {
			s.log.Debug(fmt.Sprintf("DOOM vcpu %d by vcpu %d: all %v apic %v", u.id, self, all,
				r.readsAPIC.Load() && writes.Contains(p.pages+uint64(u.id))))
		}
		if doomed && r.active.Load() && r.gen.Load() == g {
			r.doomed.Store(g)
			u.Kick()
		}
	}
	return nil
}
