package session

// The serialized recorder's and the replayer's drivers: one vCPU's chunk
// at a time, in the order the recorder picks (round robin over the
// runnable vCPUs) or the log gives; the final digest and the end record.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/treehash"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// RecordSink receives the recording (a *log.Writer).
type RecordSink interface {
	Append(log.Record) error
}

// Record runs the guest with the session's recorder (Options.Parallel)
// until it powers off, appending chunk records, a final digest and the
// end record to w. A recording that stops making progress ends with a
// *StallError (stall.go).
func (s *Session) Record(w RecordSink) (vmm.Result, error) {
	s.recordStart = time.Now()
	defer func() { s.recordEnd = time.Now() }()
	stop := s.watchStall()
	var res vmm.Result
	var err error
	if s.opts.Parallel {
		res, err = s.recordParallel(w)
	} else {
		res, err = s.recordSerialized(w)
	}
	stop()
	return res, s.stallError("record", err)
}

// recordSerialized runs the guest with the serialized recorder.
func (s *Session) recordSerialized(w RecordSink) (vmm.Result, error) {
	if err := s.startStops(); err != nil { // det_stop.go
		return vmm.Result{}, err
	}
	done, err := s.startDet()
	if err != nil {
		return vmm.Result{}, err
	}
	next := 0
	var runErr error
	// lastEnd is when the previous chunk ended: a chunk's guest time is
	// the host time from there to its own end (clock.go).
	lastEnd := time.Now()
	for !s.m.IsStopped() {
		pick, err := s.nextRunnable(next)
		if err != nil {
			runErr = err
			break
		}
		if pick < 0 {
			continue
		}
		res := s.giveTurn(s.vcpus[pick], nil, done)
		if res.err != nil {
			runErr = fmt.Errorf("vcpu %d: %w", pick, res.err)
			break
		}
		res.rec.GuestMicros = guestMicros(time.Since(lastEnd))
		lastEnd = time.Now()
		s.chunkEnded(&res.rec)
		for _, st := range res.stops {
			if runErr = w.Append(st); runErr != nil {
				break
			}
		}
		if runErr != nil {
			break
		}
		if err := w.Append(&res.rec); err != nil {
			runErr = err
			break
		}
		s.chunksDone.Add(1)
		next = pick + 1
	}
	s.m.Stop(runErr)
	return s.finishRecording(w)
}

// nextRunnable is the first runnable vCPU from next on, round robin; -1
// after advancing idle time when none is (errNoProgress when no timer
// can ever wake one).
func (s *Session) nextRunnable(next int) (int, error) {
	s.m.Lock()
	defer s.m.Unlock()
	for i := range s.vcpus {
		c := (next + i) % len(s.vcpus)
		if s.vcpus[c].RunnableLocked() {
			return c, nil
		}
	}
	if !s.m.AdvanceIdleLocked() {
		return -1, errNoProgress
	}
	return -1, nil
}

// finishRecording ends a recording of a stopped machine: the extra records
// (recorder statistics), the final digest and the end record.
func (s *Session) finishRecording(w RecordSink, extra ...log.Record) (vmm.Result, error) {
	res := s.m.Result()
	status, err := s.m.Outcome()
	if err != nil {
		return res, err
	}
	for _, r := range extra {
		if err := w.Append(r); err != nil {
			return res, err
		}
	}
	d, err := s.digest()
	if err != nil {
		return res, err
	}
	if err := w.Append(d); err != nil {
		return res, err
	}
	end := &log.End{ExitCode: int32(status), Reason: "power off", GuestNanos: uint64(s.m.VirtualTime() - s.det0)}
	return res, w.Append(end)
}

// Replay re-executes a recording's chunks in order on this machine (built
// from the same checkpoint or kernel) and checks the final digest and exit
// status. A mismatch is a *DivergenceError; a replay that stops making
// progress ends with a *StallError (stall.go).
func (s *Session) Replay(records []log.Record) (vmm.Result, error) {
	stop := s.watchStall()
	res, err := s.replay(records)
	stop()
	return res, s.stallError("replay", err)
}

// replay is Replay without the stall watch.
func (s *Session) replay(records []log.Record) (vmm.Result, error) {
	if s.opts.Parallel {
		return vmm.Result{}, fmt.Errorf("replay runs the serialized replayer; the session was opened for the parallel recorder")
	}
	done, err := s.startDet()
	if err != nil {
		return vmm.Result{}, err
	}
	var runErr error
	var wantDigest *log.Digest
	var wantEnd *log.End
	chunk := 0
	for _, r := range records {
		if runErr != nil {
			break
		}
		switch r := r.(type) {
		case *log.StateStop:
			runErr = s.stop.add(r) // det_stop.go
		case *log.Chunk:
			if runErr = s.stop.check(chunk, r); runErr != nil {
				break
			}
			if runErr = s.debugBeforeChunk(chunk, r); runErr != nil {
				break
			}
			runErr = s.replayChunk(chunk, r, done)
			s.debugCheckWrites(uint64(chunk), s.vcpus[r.VCPU])
			chunk++
			s.chunksDone.Add(1)
		case *log.Digest:
			wantDigest = r
		case *log.End:
			wantEnd = r
		}
	}
	if runErr == nil && wantEnd == nil {
		runErr = &PrefixError{Chunks: chunk}
	}
	if !s.m.IsStopped() && runErr == nil {
		runErr = &DivergenceError{Chunk: chunk - 1, What: "machine state after the last chunk", Want: "powered off", Got: "still running"}
	}
	s.m.Stop(runErr)
	res := s.m.Result()
	if _, err := s.m.Outcome(); err != nil {
		return res, err
	}
	return res, s.checkEnd(chunk-1, res.ExitStatus, wantEnd, wantDigest)
}

// PrefixError is a recording without an end record (stopped, or failed
// or stalled while recording) whose chunks all replayed matched: only
// that prefix was verified, since there is no final digest to check.
type PrefixError struct {
	Chunks int // chunks replayed, all matched
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("the recording has no end record (it was stopped, or failed, while recording): its %d chunks replayed matched, but without a final digest only this prefix is verified", e.Chunks)
}

// checkEnd compares the replay's exit status and final digest with the
// recording's (last is the index of the last chunk).
func (s *Session) checkEnd(last, status int, wantEnd *log.End, wantDigest *log.Digest) error {
	if int32(status) != wantEnd.ExitCode {
		return &DivergenceError{Chunk: last, What: "exit status", Want: fmt.Sprint(wantEnd.ExitCode), Got: fmt.Sprint(status)}
	}
	if wantDigest == nil {
		return nil
	}
	got, err := s.digest()
	if err != nil {
		return err
	}
	for i := range got.VCPUs {
		if i < len(wantDigest.VCPUs) && got.VCPUs[i] != wantDigest.VCPUs[i] {
			return &DivergenceError{Chunk: last, VCPU: i, What: "final register digest", Want: fmt.Sprintf("%x", wantDigest.VCPUs[i][:8]), Got: fmt.Sprintf("%x", got.VCPUs[i][:8])}
		}
	}
	if got.Memory != wantDigest.Memory {
		return &DivergenceError{Chunk: last, What: "final memory digest", Want: fmt.Sprintf("%x", wantDigest.Memory[:8]), Got: fmt.Sprintf("%x", got.Memory[:8])}
	}
	return nil
}

// startDet starts the vCPU goroutines of the serialized recorder or the
// replayer; chunk results arrive on the returned channel.
func (s *Session) startDet() (chan chunkResult, error) {
	s.start()
	done := make(chan chunkResult)
	ready := make(chan struct{})
	for _, v := range s.vcpus {
		go v.detLoop(done, ready)
	}
	// Each loop sets up its vCPU thread (det.go) before the machine may
	// run, stop or close.
	for range s.vcpus {
		<-ready
	}
	return done, nil
}

// start marks the start of recording or replay: wall time and virtual
// time.
func (s *Session) start() {
	s.m.SetStarted(time.Now())
	s.det0 = s.m.VirtualTime()
}

// replayChunk runs one recorded chunk and checks where it ended.
func (s *Session) replayChunk(i int, want *log.Chunk, done chan chunkResult) error {
	if int(want.VCPU) >= len(s.vcpus) {
		return &DivergenceError{Chunk: i, VCPU: int(want.VCPU), What: "vcpu", Want: fmt.Sprint(want.VCPU), Got: fmt.Sprintf("only %d vCPUs", len(s.vcpus))}
	}
	v := s.vcpus[want.VCPU]
	if s.m.IsStopped() {
		return &DivergenceError{Chunk: i, VCPU: v.id, What: "machine state", Want: "running", Got: "powered off before the recording ended"}
	}
	if err := s.waitTurn(i, v); err != nil {
		return err
	}
	res := s.giveTurn(v, want, done)
	if res.err != nil {
		if de := asDivergence(res.err); de != nil {
			de.Chunk = i
			return de
		}
		return fmt.Errorf("chunk %d (vcpu %d): %w", i, v.id, res.err)
	}
	got := res.rec
	s.chunkEnded(want)
	if got.End.RIP != want.End.RIP || got.End.Regs != want.End.Regs {
		return &DivergenceError{Chunk: i, VCPU: v.id, What: "registers at the chunk end",
			Want: fmt.Sprintf("RIP %#x, registers %016x", want.End.RIP, want.End.Regs),
			Got:  fmt.Sprintf("RIP %#x, registers %016x (%s)", got.End.RIP, got.End.Regs, v.endNote)}
	}
	return nil
}

// giveTurn hands v its next chunk (want: the recorded one; nil when
// recording) and waits for its result. A machine stopped before v took the
// turn (the stall watchdog, a signal, a device's error) ends it with
// errMachineStopped: v's loop has returned then (det.go, detLoop), and a
// bare send would wait for it forever.
func (s *Session) giveTurn(v *vcpu, want *log.Chunk, done <-chan chunkResult) chunkResult {
	select {
	case v.turn <- want:
	case <-s.m.Stopped():
		return chunkResult{err: errMachineStopped}
	}
	// Taken: runChunk returns once the machine stops (a stop kicks the
	// vCPU out of KVM_RUN), and detLoop then sends its result.
	return <-done
}

// waitTurn advances idle time until v, whose chunk comes next in the log,
// can run.
func (s *Session) waitTurn(i int, v *vcpu) error {
	s.m.Lock()
	defer s.m.Unlock()
	for !v.RunnableLocked() {
		if !s.m.AdvanceIdleLocked() {
			return &DivergenceError{Chunk: i, VCPU: v.id, What: "vcpu state", Want: "runnable", Got: v.StateLocked()}
		}
	}
	return nil
}

// digest hashes guest memory and every vCPU's registers.
// Options.DumpMemory also writes guest memory to a file, to find what
// differs when a replay diverges.
func (s *Session) digest() (*log.Digest, error) {
	if p := s.opts.DumpMemory; p != "" {
		if err := os.WriteFile(p, s.m.Memory(), 0o644); err != nil {
			return nil, fmt.Errorf("--dump-memory: %w", err)
		}
	}
	mh := treehash.New()
	if err := s.m.HashMemory(mh); err != nil {
		return nil, err
	}
	d := &log.Digest{Memory: mh.Sum()}
	for _, v := range s.vcpus {
		// A vCPU whose last chunk ended at a port or MMIO read holds
		// its result in KVM until the next KVM_RUN; a vCPU that the
		// parallel recorder stopped mid-chunk was put back at that
		// chunk's start, where it was already applied.
		if err := v.FlushPendingIO(); err != nil {
			return nil, err
		}
		regs, err := v.Regs()
		if err != nil {
			return nil, err
		}
		sr, err := v.Sregs()
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		binary.Write(h, binary.LittleEndian, regs)
		binary.Write(h, binary.LittleEndian, sr.CR0)
		binary.Write(h, binary.LittleEndian, sr.CR3)
		binary.Write(h, binary.LittleEndian, sr.CR4)
		binary.Write(h, binary.LittleEndian, sr.EFER)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		d.VCPUs = append(d.VCPUs, sum)
	}
	return d, nil
}
