package main

// The hidden --status-fd flag of record and replay: machine-readable
// progress for the daemon (internal/daemon, status.go documents the
// stream). A terminal user sees the progress line instead.

import (
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/session"
)

// statusEvery is how often a progress line is written: the daemon's
// progress is at most this stale, and a line a second costs nothing.
const statusEvery = time.Second

// statusStream writes the status stream to an inherited descriptor.
type statusStream struct {
	// total is the number of chunks to replay (0 when recording).
	total int64
	// m is the session whose progress is reported, once started.
	m *session.Session
	// logBytes reports the log's compressed size (record), or is nil.
	logBytes func() int64

	// once guards finish: a stop signal and the command's own end may
	// both try.
	once sync.Once

	mu sync.Mutex
	// enc writes to the descriptor.
	enc *json.Encoder
	// quit stops the ticker goroutine.
	quit chan struct{}
	// done is closed when the ticker goroutine has exited.
	done chan struct{}
}

// addStatusFlag registers --status-fd on cmd, hidden: it is the daemon's.
func addStatusFlag(cmd *cobra.Command, fd *int) {
	cmd.Flags().IntVar(fd, "status-fd", -1, "write JSON progress lines to this inherited file descriptor (for samsara daemon)")
	cmd.Flags().MarkHidden("status-fd")
}

// newStatusStream returns a stream on fd, or nil when fd < 0.
func newStatusStream(fd int, total int) *statusStream {
	if fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "status")
	return &statusStream{total: int64(total), enc: json.NewEncoder(f), quit: make(chan struct{}), done: make(chan struct{})}
}

// start writes m's progress once every statusEvery until finish.
func (s *statusStream) start(m *session.Session) {
	if s == nil {
		return
	}
	s.m = m
	go tickUntil(statusEvery, s.quit, s.done, func() { s.write(nil) })
}

// write sends one line; write errors are ignored (a daemon that went away
// must not fail the recording).
func (s *statusStream) write(final *daemon.ChildFinal) {
	st := daemon.ChildStatus{TotalChunks: s.total, Final: final}
	if s.m != nil {
		p := s.m.Progress()
		st.Chunks, st.GuestNanos = p.Chunks, p.GuestNanos
	}
	if s.logBytes != nil {
		st.LogBytes = s.logBytes()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enc.Encode(st)
}

// finish stops the ticker and writes the final line for err (the command's
// result) and, when err is nil or an exit status, the outcome ok.
func (s *statusStream) finish(ok daemon.Outcome, err error) {
	if s == nil {
		return
	}
	s.once.Do(func() { s.finishOnce(ok, err) })
}

func (s *statusStream) finishOnce(ok daemon.Outcome, err error) {
	if s.m != nil {
		close(s.quit)
		<-s.done
	}
	f := &daemon.ChildFinal{Outcome: ok}
	var ee *exitError
	var de *session.DivergenceError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		f.ExitStatus = ee.status
	case errors.As(err, &de):
		f.Outcome = daemon.OutcomeDiverged
		f.Divergence = &daemon.Divergence{Chunk: de.Chunk, VCPU: de.VCPU, What: de.What, Want: de.Want, Got: de.Got, Message: de.Error()}
	default:
		f.Outcome, f.Error = daemon.OutcomeFailed, err.Error()
	}
	s.write(f)
}
