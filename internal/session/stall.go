package session

// The stall bound: a recording or replay that stops making progress (no
// chunk recorded or replayed for Options.StallLimit) ends with a
// *StallError that names where every vCPU stands, instead of running on.
// What was recorded before stays readable: the log holds every chunk up to
// the stop (without an end record, which replay reports as a truncated
// recording after re-executing the prefix).

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// defaultStallLimit bounds how long a recording or replay may go without
// a chunk. It lies above the longest a healthy chunk runs: the serialized
// recorder fails a chunk that stays in user mode for userSpinLimit (60 s),
// and replay fails one that takes replayChunkLimit (120 s); a parallel
// chunk in user mode has no bound of its own (det_bounds.go), so this is
// its bound too.
const defaultStallLimit = 150 * time.Second

// stallCheckEvery is how often the stall watchdog looks at the chunk
// count: a tenth of the smallest limit anyone sets, at most a second.
func stallCheckEvery(limit time.Duration) time.Duration { return min(limit/10, time.Second) }

// errStalled stops the machine when the watchdog fires; Record and Replay
// turn it into a *StallError once every vCPU is out of the guest.
var errStalled = errors.New("no progress")

// StallError is a recording or replay that made no progress for Waited.
type StallError struct {
	What   string        // "record" or "replay"
	Waited time.Duration // how long no chunk ended
	Chunks int64         // chunks done before the stall
	VCPUs  []VCPUStatus  // where each vCPU stood when it was stopped
}

// VCPUStatus is where a vCPU stood.
type VCPUStatus struct {
	ID    int
	RIP   uint64
	CPL   int
	State string // running, halted, wait-sipi, dead
	// LastExit is the KVM exit reason of its last exit (KVM_EXIT_*).
	LastExit uint32
	// Err is why the registers could not be read, if they could not.
	Err error
}

func (e *StallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s made no progress for %v after %d chunks (no chunk ended);", e.What, e.Waited, e.Chunks)
	for _, v := range e.VCPUs {
		if v.Err != nil {
			fmt.Fprintf(&b, " vcpu %d %s (registers: %v);", v.ID, v.State, v.Err)
			continue
		}
		fmt.Fprintf(&b, " vcpu %d %s at RIP %#x CPL %d, last exit %d;", v.ID, v.State, v.RIP, v.CPL, v.LastExit)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// watchStall stops the machine with errStalled when no chunk ends for the
// stall limit. It returns the function that ends the watch.
func (s *Session) watchStall() (stop func()) {
	limit := s.opts.StallLimit
	if limit <= 0 {
		limit = defaultStallLimit
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(stallCheckEvery(limit))
		defer t.Stop()
		last, since := s.chunksDone.Load(), time.Now()
		for {
			select {
			case <-quit:
				return
			case <-s.m.Stopped():
				return
			case <-t.C:
			}
			if n := s.chunksDone.Load(); n != last {
				last, since = n, time.Now()
				continue
			}
			if waited := time.Since(since); waited >= limit {
				s.stalledAfter = waited
				s.m.Stop(errStalled)
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// stallError replaces errStalled with the *StallError; called once the
// vCPUs are out of the guest (their registers can be read only then).
func (s *Session) stallError(what string, err error) error {
	if !errors.Is(err, errStalled) {
		return err
	}
	e := &StallError{What: what, Waited: s.stalledAfter, Chunks: s.chunksDone.Load()}
	for _, v := range s.vcpus {
		st := VCPUStatus{ID: v.id, LastExit: v.ExitReason()}
		s.m.Lock()
		st.State = v.StateLocked()
		s.m.Unlock()
		if r, err := v.Regs(); err != nil {
			st.Err = err
		} else if sr, err := v.Sregs(); err != nil {
			st.Err = err
		} else {
			st.RIP, st.CPL = r.RIP, int(sr.CS.Selector&3)
		}
		e.VCPUs = append(e.VCPUs, st)
	}
	return e
}
