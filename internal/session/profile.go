package session

// Where a recording's wall time goes (issue 18, `record --profile`): each
// vCPU's goroutine splits its own time into phases as it runs, so that a
// change to a recorder can be justified by the phase it shrinks. A phase
// is charged by the goroutine of the vCPU it belongs to; what no phase
// claims (chunk bookkeeping, the log's encoder when it runs on that
// goroutine, scheduling) is "other".

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// Phase is one part of a vCPU's wall time while recording.
type Phase int

const (
	// PhaseGuest: in KVM_RUN, running guest code (and what KVM handles
	// without leaving it).
	PhaseGuest Phase = iota
	// PhaseExit: samsara handling exits: devices, virtual time, timers.
	PhaseExit
	// PhaseHarvest: the parallel recorder collecting a chunk's page sets
	// at its end (ept views).
	PhaseHarvest
	// PhaseCommit: the parallel recorder's commit, including the wait for
	// the chunks ahead of it in the order (internal/commit).
	PhaseCommit
	// PhaseSquashed: the parallel recorder's squashed chunks: their guest
	// running and harvest, now wasted, and putting the vCPU back.
	PhaseSquashed
	// PhaseWait: waiting for a turn (serialized), or to be runnable or to
	// begin a transaction (parallel).
	PhaseWait
	// PhaseCheckpoint: the parallel recorder's chunk-start snapshot of the
	// vCPU and the start of its page tracking.
	PhaseCheckpoint
	// PhaseStops: finding a chunk's end point without a counter: the
	// serialized recorder's preemption checks and state-matching tries.
	PhaseStops
	numPhases
)

// phaseNames are the profile's column names, in Phase order.
var phaseNames = [numPhases]string{"guest", "exits", "harvest", "commit", "squashed", "wait", "checkpoint", "stops"}

func (p Phase) String() string { return phaseNames[p] }

// otherColumn is the column of the time no phase claims.
const otherColumn = "other"

// ProfileColumns are the profile's columns in the order Format prints
// them, the phases and then "other": also the keys of each vCPU's object
// in the JSON (the benchmark's profile table takes its columns from here).
func ProfileColumns() []string {
	return append(phaseNames[:numPhases:numPhases], otherColumn)
}

// phaseClock is one vCPU's time per phase, in nanoseconds. Atomic: the
// vCPU's goroutine adds, Profile reads, possibly while that goroutine is
// still on its way out after the machine stopped.
type phaseClock [numPhases]atomic.Int64

// lap charges the time since since to phase p and returns now, the start
// of the next lap.
func (v *vcpu) lap(p Phase, since time.Time) time.Time {
	now := time.Now()
	v.prof[p].Add(int64(now.Sub(since)))
	return now
}

// move recharges d from phase from to phase to (a squashed chunk's
// running time).
func (v *vcpu) move(from, to Phase, d time.Duration) {
	v.prof[from].Add(-int64(d))
	v.prof[to].Add(int64(d))
}

// Profile is the split of a recording's wall time.
type Profile struct {
	// Wall is the recording's wall time, from the start of recording to
	// its end.
	Wall time.Duration
	// VCPUs holds each vCPU's time per phase.
	VCPUs []VCPUProfile
}

// VCPUProfile is one vCPU's time per phase.
type VCPUProfile [numPhases]time.Duration

// Other is the part of wall that no phase claims (never negative).
func (p VCPUProfile) Other(wall time.Duration) time.Duration {
	o := wall
	for _, d := range p {
		o -= d
	}
	return max(o, 0)
}

// Profile returns the split of the recording's wall time so far (complete
// once Record has returned).
func (s *Session) Profile() Profile {
	end := s.recordEnd
	if end.IsZero() {
		end = time.Now()
	}
	p := Profile{Wall: end.Sub(s.recordStart)}
	for _, v := range s.vcpus {
		var vp VCPUProfile
		for i := range vp {
			vp[i] = time.Duration(v.prof[i].Load())
		}
		p.VCPUs = append(p.VCPUs, vp)
	}
	return p
}

// Format writes the profile as a table: one row per vCPU, each phase's
// share of the wall time.
func (p Profile) Format(w io.Writer) {
	fmt.Fprintf(w, "profile: %.2fs of wall time per vCPU, split by phase (%% of it)\n", p.Wall.Seconds())
	fmt.Fprintf(w, "%-7s", "")
	for _, n := range phaseNames {
		fmt.Fprintf(w, " %10s", n)
	}
	fmt.Fprintf(w, " %10s\n", otherColumn)
	for i, vp := range p.VCPUs {
		fmt.Fprintf(w, "%-7s", fmt.Sprintf("vcpu %d", i))
		for _, d := range vp {
			fmt.Fprintf(w, " %9.1f%%", p.share(d))
		}
		fmt.Fprintf(w, " %9.1f%%\n", p.share(vp.Other(p.Wall)))
	}
}

func (p Profile) share(d time.Duration) float64 {
	if p.Wall <= 0 {
		return 0
	}
	return 100 * d.Seconds() / p.Wall.Seconds()
}

// MarshalJSON writes seconds: {"wall_seconds": W, "vcpus": [{"guest": s,
// ..., "other": s}, ...]} (the benchmark's and the suite's JSON).
func (p Profile) MarshalJSON() ([]byte, error) {
	type out struct {
		Wall  float64              `json:"wall_seconds"`
		VCPUs []map[string]float64 `json:"vcpus"`
	}
	o := out{Wall: p.Wall.Seconds(), VCPUs: []map[string]float64{}}
	for _, vp := range p.VCPUs {
		m := map[string]float64{otherColumn: vp.Other(p.Wall).Seconds()}
		for i, d := range vp {
			m[phaseNames[i]] = d.Seconds()
		}
		o.VCPUs = append(o.VCPUs, m)
	}
	return json.Marshal(o)
}

// String is the table Format writes.
func (p Profile) String() string {
	var b strings.Builder
	p.Format(&b)
	return b.String()
}
