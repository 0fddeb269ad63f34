package vmm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/samsara-vmm/samsara/internal/treehash"
	"os"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"

	"github.com/samsara-vmm/samsara/internal/log"
)

// RecordSink receives the recording (a *log.Writer).
type RecordSink interface {
	Append(log.Record) error
}

// Record runs the guest with the serialized recorder until it powers off,
// appending chunk records, a final digest and the end record to w.
func (m *Machine) Record(w RecordSink) (Result, error) {
	done, err := m.startDet("record")
	if err != nil {
		return Result{}, err
	}
	next := 0
	var runErr error
	for !m.isStopped() {
		m.mu.Lock()
		pick := -1
		for i := 0; i < len(m.vcpus) && pick < 0; i++ {
			c := (next + i) % len(m.vcpus)
			if m.vcpus[c].runnableLocked() {
				pick = c
			}
		}
		if pick < 0 {
			ok := m.advanceIdleLocked()
			m.mu.Unlock()
			if !ok {
				runErr = errNoProgress
				break
			}
			continue
		}
		m.mu.Unlock()
		v := m.vcpus[pick]
		v.det.turn <- nil
		res := <-done
		if res.err != nil {
			runErr = fmt.Errorf("vcpu %d: %w", pick, res.err)
			break
		}
		m.chunkEnded(&res.rec)
		if err := w.Append(&res.rec); err != nil {
			runErr = err
			break
		}
		m.chunksDone.Add(1)
		next = pick + 1
	}
	m.mu.Lock()
	m.stop(m.status, runErr)
	m.mu.Unlock()
	return m.finishRecording(w)
}

// finishRecording ends a recording of a stopped machine: the extra records
// (recorder statistics), the final digest and the end record.
func (m *Machine) finishRecording(w RecordSink, extra ...log.Record) (Result, error) {
	res := Result{ExitStatus: m.status, Elapsed: time.Since(m.started)}
	if m.err != nil {
		return res, m.err
	}
	for _, r := range extra {
		if err := w.Append(r); err != nil {
			return res, err
		}
	}
	d, err := m.digest()
	if err != nil {
		return res, err
	}
	if err := w.Append(d); err != nil {
		return res, err
	}
	if err := w.Append(&log.End{ExitCode: int32(m.status), Reason: "power off", GuestNanos: uint64(m.clock.vt - m.det0)}); err != nil {
		return res, err
	}
	return res, nil
}

// Progress is how far a recording or replay has come.
type Progress struct {
	Chunks     int64 // chunks recorded or replayed
	GuestNanos int64 // guest (virtual) time since the start
}

// Progress reports how far Record or Replay has come; safe to call from
// any goroutine while they run.
func (m *Machine) Progress() Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Progress{Chunks: m.chunksDone.Load(), GuestNanos: m.clock.vt - m.det0}
}

// Replay re-executes a recording's chunks in order on this machine (built
// from the same checkpoint or kernel) and checks the final digest and exit
// status. A mismatch is a *DivergenceError.
func (m *Machine) Replay(records []log.Record) (Result, error) {
	done, err := m.startDet("replay")
	if err != nil {
		return Result{}, err
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
		case *log.Chunk:
			runErr = m.replayChunk(chunk, r, done)
			m.debugCheckWrites(uint64(chunk))
			chunk++
			m.chunksDone.Add(1)
		case *log.Digest:
			wantDigest = r
		case *log.End:
			wantEnd = r
		}
	}
	if runErr == nil && wantEnd == nil {
		runErr = fmt.Errorf("the recording has no end record (truncated?)")
	}
	m.mu.Lock()
	status := m.status
	if !m.isStopped() && runErr == nil {
		runErr = &DivergenceError{Chunk: chunk - 1, What: "machine state after the last chunk", Want: "powered off", Got: "still running"}
	}
	m.stop(status, runErr)
	m.mu.Unlock()
	res := Result{ExitStatus: m.status, Elapsed: time.Since(m.started)}
	if m.err != nil {
		return res, m.err
	}
	if int32(m.status) != wantEnd.ExitCode {
		return res, &DivergenceError{Chunk: chunk - 1, What: "exit status", Want: fmt.Sprint(wantEnd.ExitCode), Got: fmt.Sprint(m.status)}
	}
	if wantDigest != nil {
		got, err := m.digest()
		if err != nil {
			return res, err
		}
		for i := range got.VCPUs {
			if i < len(wantDigest.VCPUs) && got.VCPUs[i] != wantDigest.VCPUs[i] {
				return res, &DivergenceError{Chunk: chunk - 1, VCPU: i, What: "final register digest", Want: fmt.Sprintf("%x", wantDigest.VCPUs[i][:8]), Got: fmt.Sprintf("%x", got.VCPUs[i][:8])}
			}
		}
		if got.Memory != wantDigest.Memory {
			return res, &DivergenceError{Chunk: chunk - 1, What: "final memory digest", Want: fmt.Sprintf("%x", wantDigest.Memory[:8]), Got: fmt.Sprintf("%x", got.Memory[:8])}
		}
	}
	return res, nil
}

// startDet prepares every vCPU for record or replay and starts their
// goroutines; chunk results arrive on the returned channel.
func (m *Machine) startDet(what string) (chan chunkResult, error) {
	if !m.cfg.Deterministic {
		return nil, fmt.Errorf("%s needs a machine built with Deterministic set", what)
	}
	if err := m.openDet(); err != nil {
		return nil, err
	}
	m.started = time.Now()
	m.det0 = m.clock.vt
	done := make(chan chunkResult)
	ready := make(chan struct{})
	for _, v := range m.vcpus {
		go v.detLoop(done, ready)
	}
	// Each loop sets up its vCPU thread (det.go) before the machine may
	// run, stop or close.
	for range m.vcpus {
		<-ready
	}
	return done, nil
}

// replayChunk runs one recorded chunk and checks where it ended.
func (m *Machine) replayChunk(i int, want *log.Chunk, done chan chunkResult) error {
	if int(want.VCPU) >= len(m.vcpus) {
		return &DivergenceError{Chunk: i, VCPU: int(want.VCPU), What: "vcpu", Want: fmt.Sprint(want.VCPU), Got: fmt.Sprintf("only %d vCPUs", len(m.vcpus))}
	}
	v := m.vcpus[want.VCPU]
	if m.isStopped() {
		return &DivergenceError{Chunk: i, VCPU: v.id, What: "machine state", Want: "running", Got: "powered off before the recording ended"}
	}
	for {
		m.mu.Lock()
		ok := v.runnableLocked()
		if !ok {
			if !m.advanceIdleLocked() {
				m.mu.Unlock()
				return &DivergenceError{Chunk: i, VCPU: v.id, What: "vcpu state", Want: "runnable", Got: v.state.String()}
			}
		}
		m.mu.Unlock()
		if ok {
			break
		}
	}
	v.det.turn <- want
	res := <-done
	if res.err != nil {
		var de *DivergenceError
		if asDivergence(res.err, &de) {
			de.Chunk = i
			return de
		}
		return fmt.Errorf("chunk %d (vcpu %d): %w", i, v.id, res.err)
	}
	got := res.rec
	m.chunkEnded(want)
	if got.End.RIP != want.End.RIP || got.End.Regs != want.End.Regs {
		return &DivergenceError{Chunk: i, VCPU: v.id, What: "registers at the chunk end",
			Want: fmt.Sprintf("RIP %#x, registers %016x", want.End.RIP, want.End.Regs),
			Got:  fmt.Sprintf("RIP %#x, registers %016x", got.End.RIP, got.End.Regs)}
	}
	return nil
}

// digest hashes guest memory and every vCPU's registers.
// SAMSARA_DUMP_MEMORY=FILE also writes guest memory to FILE, to find what
// differs when a replay diverges.
func (m *Machine) digest() (*log.Digest, error) {
	if p := os.Getenv("SAMSARA_DUMP_MEMORY"); p != "" {
		os.WriteFile(p, m.mem.mem, 0o644)
	}
	mh := treehash.New()
	if err := m.mem.hashInto(mh); err != nil {
		return nil, err
	}
	d := &log.Digest{Memory: mh.Sum()}
	for _, v := range m.vcpus {
		// A vCPU whose last chunk ended at a port or MMIO read holds
		// its result in KVM until the next KVM_RUN; a vCPU that the
		// parallel recorder stopped mid-chunk was put back at that
		// chunk's start, where it was already applied.
		if err := v.flushPendingIO(); err != nil {
			return nil, err
		}
		regs, err := kvm.GetRegs(uintptr(v.fd))
		if err != nil {
			return nil, err
		}
		s, err := kvm.GetSregs(uintptr(v.fd))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		binary.Write(h, binary.LittleEndian, regs)
		binary.Write(h, binary.LittleEndian, s.CR0)
		binary.Write(h, binary.LittleEndian, s.CR3)
		binary.Write(h, binary.LittleEndian, s.CR4)
		binary.Write(h, binary.LittleEndian, s.EFER)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		d.VCPUs = append(d.VCPUs, sum)
	}
	return d, nil
}
