package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Formats of a trace (`samsara trace --format`).
const (
	FormatNative   = "native"
	FormatText     = "text"
	FormatChampSim = "champsim"
)

// Record kinds of the native format (package comment).
const (
	KindChunk  = 1
	KindInsn   = 2
	KindInject = 3
	KindUser   = 4
	KindHalt   = 5
	KindEnd    = 0xff
)

// event is one record before encoding.
type event struct {
	kind  uint8
	chunk uint32
	index uint64
	rip   uint64
	vec   uint8
	insn  *Insn
	total uint64
}

// encoder writes one vCPU's file in one format.
type encoder interface {
	write(e *event) error
	close() error
}

// Set is a trace directory being written: one encoder per vCPU, under
// the temporary name until Finish.
type Set struct {
	dir, tmp string
	format   string
	files    []*os.File
	encs     []encoder
	// insns counts the instructions written per vCPU.
	insns []uint64
}

// FileName is vCPU v's file in a trace of format.
func FileName(format string, v int) string {
	switch format {
	case FormatText:
		return fmt.Sprintf("vcpu%d.txt", v)
	case FormatChampSim:
		return fmt.Sprintf("vcpu%d.champsim", v)
	}
	return fmt.Sprintf("vcpu%d.trace.zst", v)
}

// Create starts a trace of vcpus vCPUs in dir (which must not exist), in
// dir.partial until Finish renames it.
func Create(dir, format string, vcpus int) (*Set, error) {
	if format != FormatNative && format != FormatText && format != FormatChampSim {
		return nil, fmt.Errorf("unknown trace format %q (native, text or champsim)", format)
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("trace directory %s exists already", dir)
	}
	s := &Set{dir: dir, tmp: dir + ".partial", format: format, insns: make([]uint64, vcpus)}
	if err := os.RemoveAll(s.tmp); err != nil {
		return nil, fmt.Errorf("remove an old partial trace: %w", err)
	}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create the trace directory: %w", err)
	}
	for v := range vcpus {
		f, err := os.Create(filepath.Join(s.tmp, FileName(format, v)))
		if err != nil {
			s.Abort()
			return nil, fmt.Errorf("create the trace of vcpu %d: %w", v, err)
		}
		s.files = append(s.files, f)
		enc, err := newEncoder(format, f, v)
		if err != nil {
			s.Abort()
			return nil, err
		}
		s.encs = append(s.encs, enc)
	}
	return s, nil
}

func newEncoder(format string, f *os.File, v int) (encoder, error) {
	w := bufio.NewWriterSize(f, 1<<20)
	switch format {
	case FormatText:
		return &textEncoder{w: w, vcpu: v}, nil
	case FormatChampSim:
		return &champEncoder{w: w}, nil
	}
	return newNativeEncoder(w, v)
}

func (s *Set) emit(v int, e *event) error {
	if v < 0 || v >= len(s.encs) {
		return fmt.Errorf("trace: vcpu %d out of range (%d vCPUs)", v, len(s.encs))
	}
	if err := s.encs[v].write(e); err != nil {
		return fmt.Errorf("write the trace of vcpu %d: %w", v, err)
	}
	return nil
}

// Chunk marks the start of chunk on vCPU v at rip.
func (s *Set) Chunk(v int, chunk uint32, rip uint64) error {
	return s.emit(v, &event{kind: KindChunk, chunk: chunk, rip: rip})
}

// Insn writes an executed instruction of vCPU v.
func (s *Set) Insn(v int, in *Insn) error {
	if v >= 0 && v < len(s.insns) {
		s.insns[v]++
	}
	return s.emit(v, &event{kind: KindInsn, chunk: in.Chunk, index: in.Index, rip: in.RIP, insn: in})
}

// Inject records an interrupt injected into vCPU v before instruction
// index of chunk.
func (s *Set) Inject(v int, chunk uint32, index uint64, vec uint8) error {
	return s.emit(v, &event{kind: KindInject, chunk: chunk, index: index, vec: vec})
}

// User records that vCPU v ran user code from rip, not traced.
func (s *Set) User(v int, chunk uint32, index uint64, rip uint64) error {
	return s.emit(v, &event{kind: KindUser, chunk: chunk, index: index, rip: rip})
}

// Halt records a HLT (or STI; HLT) run without a step.
func (s *Set) Halt(v int, chunk uint32, index uint64, rip uint64) error {
	return s.emit(v, &event{kind: KindHalt, chunk: chunk, index: index, rip: rip})
}

// Instructions is the number of instructions written for vCPU v.
func (s *Set) Instructions(v int) uint64 { return s.insns[v] }

// Finish writes the end records, closes the files and renames the
// directory to its final name: only a finished trace is complete.
func (s *Set) Finish() error {
	var errs []error
	for v, enc := range s.encs {
		errs = append(errs, enc.write(&event{kind: KindEnd, total: s.insns[v]}), enc.close(), s.files[v].Close())
	}
	if err := errors.Join(errs...); err != nil {
		s.Abort()
		return fmt.Errorf("finish the trace: %w", err)
	}
	if err := os.Rename(s.tmp, s.dir); err != nil {
		s.Abort()
		return fmt.Errorf("finish the trace: %w", err)
	}
	return nil
}

// Abort removes the partial trace.
func (s *Set) Abort() {
	for _, f := range s.files {
		f.Close()
	}
	os.RemoveAll(s.tmp)
}

// flusher is a buffered writer.
type flusher interface {
	io.Writer
	Flush() error
}
