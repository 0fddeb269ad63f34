// Package nde is the one place where non-deterministic input enters a
// recorded guest. Each source is a hook: in record mode it takes the
// host's value and appends it to the log; in replay mode it returns the
// logged value instead, in the same order; in plain run mode it just
// returns the host's value.
//
// The sources of non-determinism samsara knows (README, "Determinism
// contract"):
//
//   - wall-clock time read by the guest through the CMOS RTC (WallTime);
//   - the order in which vCPUs run and where each chunk ends: the
//     chunk records of internal/log, written by the recorder itself;
//   - the interrupts samsara injects: derived deterministically from the
//     virtual clock and device state at exits, and logged as Interrupt
//     records so that replay can check them;
//   - the program arguments and the disk image: fixed by the log header
//     (argv, SHA-256 of the image).
//
// Serial input is not forwarded to recorded guests.
package nde

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// Mode says what the hooks do.
type Mode int

const (
	// Run: no log; hooks return host values.
	Run Mode = iota
	// Record: hooks return host values and log them.
	Record
	// Replay: hooks return logged values.
	Replay
)

// ErrExhausted is a replay asking for more inputs of a kind than the
// recording holds: the replay has diverged.
var ErrExhausted = errors.New("replay asked for an input the recording does not have")

// Sink receives the records the hooks produce in record mode.
type Sink interface {
	Append(log.Record) error
}

// Source implements the hooks for one machine.
type Source struct {
	mode Mode
	sink Sink
	// mu guards times and err.
	mu sync.Mutex
	// times are the logged wall-clock values still to be replayed.
	times []int64
	// err is the first error a hook met; hooks cannot return errors to
	// device code, so the machine checks Err after each exit.
	err error
}

// NewRun returns hooks for an unrecorded run.
func NewRun() *Source { return &Source{mode: Run} }

// NewRecord returns hooks that log to sink.
func NewRecord(sink Sink) *Source { return &Source{mode: Record, sink: sink} }

// NewReplay returns hooks that feed the Time records of a recording back.
func NewReplay(records []log.Record) *Source {
	s := &Source{mode: Replay}
	for _, r := range records {
		if t, ok := r.(*log.Time); ok {
			s.times = append(s.times, t.Nanos)
		}
	}
	return s
}

// Mode returns the hooks' mode.
func (s *Source) Mode() Mode { return s.mode }

// WallTime is the host's wall-clock time as the guest reads it (RTC).
func (s *Source) WallTime(vcpu int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.mode {
	case Record:
		now := time.Now()
		if err := s.sink.Append(&log.Time{VCPU: uint32(vcpu), Nanos: now.UnixNano()}); err != nil && s.err == nil {
			s.err = fmt.Errorf("log wall time: %w", err)
		}
		return now
	case Replay:
		if len(s.times) == 0 {
			if s.err == nil {
				s.err = fmt.Errorf("wall time: %w", ErrExhausted)
			}
			return time.Unix(0, 0)
		}
		t := s.times[0]
		s.times = s.times[1:]
		return time.Unix(0, t)
	}
	return time.Now()
}

// Err returns the first error a hook met.
func (s *Source) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
