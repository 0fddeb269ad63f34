package main

// Stopping a recording cleanly: on SIGINT or SIGTERM, record stops taking
// records and closes the log at once with its end marker, so the log holds
// every record appended before the signal, ending with the last chunk that
// committed (and perhaps the inputs of the chunk that was running, which
// replay never reaches). Replay replays that prefix and says so: the log
// has no end record. Without this, a signal killed the process with the
// last compressed block still in memory and the log empty.
//
// The signal also stops the machine (onStop), which kicks every vCPU out
// of the guest, so the recorder returns at once; should it not (a vCPU
// thread stuck in the host kernel), the process does not wait for it:
// once the log is closed it gives the recorder stopExitWait to return,
// then exits. The machine's memory and disk overlay are memory-backed and
// go with the process.

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// errStopped is what the sink returns after a stop signal; the recorder
// ends with it.
var errStopped = errors.New("recording stopped by a signal")

// stopExitWait is how long a stopped recording waits for the recorder to
// return before it exits without it: long enough for a chunk of guest
// kernel code to end (chunk budgets are milliseconds), short enough that
// a stop feels immediate.
const stopExitWait = time.Second

// stopSink passes records to the log writer until a stop signal.
type stopSink struct {
	// w receives the records.
	w *log.Writer
	// closeLog flushes and finishes the log and status; called once.
	closeLog func()
	// onStop, when set, stops the recorder (the machine) after a signal.
	onStop func()
	// once guards closeLog.
	once sync.Once
	// signal is the number of the stop signal, 0 before one came.
	signal atomic.Int32
	// sigs receives SIGINT and SIGTERM.
	sigs chan os.Signal
	// returned is closed when the record command has returned.
	returned chan struct{}
}

// newStopSink returns a sink on w that stops on SIGINT or SIGTERM and
// then calls closeLog (which must close w, flush what is under it and
// write the final status).
func newStopSink(w *log.Writer, closeLog func()) *stopSink {
	s := &stopSink{w: w, closeLog: closeLog, sigs: make(chan os.Signal, 1), returned: make(chan struct{})}
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-s.sigs
		if !ok {
			return
		}
		s.signal.Store(int32(sig.(syscall.Signal)))
		s.finish()
		if s.onStop != nil {
			s.onStop()
		}
		select {
		case <-s.returned:
		case <-time.After(stopExitWait):
			fmt.Fprintf(os.Stderr, "samsara: stopped by %v: the log holds the recorded prefix and replays; the running chunk was dropped\n", sig)
			os.Exit(s.stopStatus())
		}
	}()
	return s
}

// Append is session.RecordSink's.
func (s *stopSink) Append(r log.Record) error {
	if s.signal.Load() != 0 {
		return errStopped
	}
	return s.w.Append(r)
}

// finish closes the log once.
func (s *stopSink) finish() { s.once.Do(s.closeLog) }

// release restores the default signal handling (a later signal kills)
// and tells a stop in progress that the command has returned.
func (s *stopSink) release() {
	signal.Stop(s.sigs)
	close(s.sigs)
	close(s.returned)
}

// stopStatus is the exit status of a stopped recording, 128 + the signal
// number as a shell reports a signalled command (130 for SIGINT), or 0
// when no stop signal came.
func (s *stopSink) stopStatus() int {
	if n := s.signal.Load(); n != 0 {
		return 128 + int(n)
	}
	return 0
}
