package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	KindTask   = 6
	KindFault  = 7
	KindDevice = 8
	KindDMA    = 9
	KindFrame  = 10
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
	task  *Task
	dev   *Device
	dma   *DMA
	frame *Frame
}

// Device is a guest access to a device register that exited to the VMM:
// a port (IN/OUT, INS/OUTS) or an MMIO access. Data is what the guest
// wrote, or what the device model answered a read with (Count elements
// of Size bytes: a string instruction moves several).
type Device struct {
	MMIO, Write bool
	Addr        uint64
	Size        uint8
	Count       uint16
	Data        []byte
}

// DMA is a device's write into guest memory (virtio-blk: the data of a
// read request, the status byte, the used ring): Len bytes at
// guest-physical PA, Data the bytes written.
type DMA struct {
	PA   uint64
	Data []byte
}

// Frame is the stack frame an interrupt's or exception's delivery pushed
// (Intel SDM vol. 3, 6.14.1): at virtual address VA (physical PA), from
// the lowest address up, the error code if HasError, then RIP, CS, RFLAGS,
// RSP and SS.
type Frame struct {
	VA, PA   uint64
	HasError bool
	Error    uint64
	RIP, CS  uint64
	RFLAGS   uint64
	RSP, SS  uint64
}

// Words is the frame as the stack holds it, lowest address first.
func (f *Frame) Words() []uint64 {
	w := []uint64{f.RIP, f.CS, f.RFLAGS, f.RSP, f.SS}
	if f.HasError {
		w = append([]uint64{f.Error}, w...)
	}
	return w
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
	// insns counts the instructions written per vCPU, users those of
	// them at CPL 3.
	insns, users []uint64
	// running is each vCPU's task as last named (Task), nil before.
	running []*Task
	// ran counts, per vCPU and task, what the trace holds (who ran).
	ran map[ranKey]*Ran
	// events counts the records that are not instructions.
	events Events
}

// Events counts a trace's device accesses, DMA writes (and their bytes)
// and interrupt or exception frames.
type Events struct {
	Devices, DMAs, DMABytes, Frames uint64
}

// Events is what the trace holds besides instructions.
func (s *Set) Events() Events { return s.events }

// ranKey identifies a task on a vCPU.
type ranKey struct {
	vcpu int
	task Task
}

// Ran is what a trace holds of one task on one vCPU.
type Ran struct {
	VCPU int
	Task Task
	// Chunks is the number of chunks that started with the task running;
	// Instructions the traced instructions while it ran; UserStretches
	// its stretches of untraced user code.
	Chunks, Instructions, UserStretches uint64
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
	s := &Set{dir: dir, tmp: dir + ".partial", format: format, insns: make([]uint64, vcpus), users: make([]uint64, vcpus),
		running: make([]*Task, vcpus), ran: map[ranKey]*Ran{}}
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

// Chunk marks the start of chunk on vCPU v at rip. The task running is
// not known until the next Task.
func (s *Set) Chunk(v int, chunk uint32, rip uint64) error {
	if v >= 0 && v < len(s.running) {
		s.running[v] = nil
	}
	return s.emit(v, &event{kind: KindChunk, chunk: chunk, rip: rip})
}

// Task records that vCPU v runs task t from instruction index of chunk
// on: at a chunk's start, and where the kernel switched tasks.
func (s *Set) Task(v int, chunk uint32, index uint64, t Task) error {
	if v >= 0 && v < len(s.running) {
		start := s.running[v] == nil
		s.running[v] = &t
		if start {
			s.count(v).Chunks++
		}
	}
	return s.emit(v, &event{kind: KindTask, chunk: chunk, index: index, task: &t})
}

// count is the tally of vCPU v's running task.
func (s *Set) count(v int) *Ran {
	var t Task
	if r := s.running[v]; r != nil {
		t = *r
	}
	k := ranKey{v, t}
	c := s.ran[k]
	if c == nil {
		c = &Ran{VCPU: v, Task: t}
		s.ran[k] = c
	}
	return c
}

// Insn writes an executed instruction of vCPU v.
func (s *Set) Insn(v int, in *Insn) error {
	if v >= 0 && v < len(s.insns) {
		s.insns[v]++
		if in.CPL == 3 {
			s.users[v]++
		}
		if s.running[v] != nil {
			s.count(v).Instructions++
		}
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
	if v >= 0 && v < len(s.running) && s.running[v] != nil {
		s.count(v).UserStretches++
	}
	return s.emit(v, &event{kind: KindUser, chunk: chunk, index: index, rip: rip})
}

// Fault records that the user instruction at index of chunk raised an
// exception whose kernel handler ran within its step, untraced, before
// the instruction was retried and completed.
func (s *Set) Fault(v int, chunk uint32, index uint64, rip uint64) error {
	return s.emit(v, &event{kind: KindFault, chunk: chunk, index: index, rip: rip})
}

// Device records a device access that exited at position index of
// chunk (after the instruction that made it).
func (s *Set) Device(v int, chunk uint32, index uint64, d Device) error {
	s.events.Devices++
	return s.emit(v, &event{kind: KindDevice, chunk: chunk, index: index, dev: &d})
}

// DMA records a device's write into guest memory while the exit at
// position index of chunk was handled.
func (s *Set) DMA(v int, chunk uint32, index uint64, d DMA) error {
	s.events.DMAs++
	s.events.DMABytes += uint64(len(d.Data))
	return s.emit(v, &event{kind: KindDMA, chunk: chunk, index: index, dma: &d})
}

// Frame records the frame that the delivery of the interrupt or
// exception recorded just before it pushed.
func (s *Set) Frame(v int, chunk uint32, index uint64, f Frame) error {
	s.events.Frames++
	return s.emit(v, &event{kind: KindFrame, chunk: chunk, index: index, frame: &f})
}

// Halt records a HLT (or STI; HLT) run without a step.
func (s *Set) Halt(v int, chunk uint32, index uint64, rip uint64) error {
	return s.emit(v, &event{kind: KindHalt, chunk: chunk, index: index, rip: rip})
}

// Instructions is the number of instructions written for vCPU v.
func (s *Set) Instructions(v int) uint64 { return s.insns[v] }

// UserInstructions is the number of those at CPL 3.
func (s *Set) UserInstructions(v int) uint64 { return s.users[v] }

// WhoRan is the tally per vCPU and task, by vCPU and then by
// instructions, most first; empty when no task was named.
func (s *Set) WhoRan() []Ran {
	out := make([]Ran, 0, len(s.ran))
	for _, r := range s.ran {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.VCPU != b.VCPU {
			return a.VCPU < b.VCPU
		}
		if a.Instructions != b.Instructions {
			return a.Instructions > b.Instructions
		}
		return a.Task.PID < b.Task.PID
	})
	return out
}

// WhoRanFile is the who-ran summary's name in a trace directory.
const WhoRanFile = "whoran.txt"

// writeWhoRan writes the who-ran summary (package comment) into the
// trace directory, when a task was named.
func (s *Set) writeWhoRan() error {
	rows := s.WhoRan()
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("# who ran: per vCPU and process, the chunks that started with it running, its traced\n")
	b.WriteString("# instructions and its stretches of untraced user code (samsara trace)\n")
	fmt.Fprintf(&b, "%-4s %-12s %-7s %-7s %-16s %8s %14s %14s\n", "vcpu", "task", "pid", "tgid", "comm", "chunks", "instructions", "user-stretches")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-4d %-12x %-7d %-7d %-16q %8d %14d %14d\n", r.VCPU, r.Task.Addr, r.Task.PID, r.Task.TGID, r.Task.Comm, r.Chunks, r.Instructions, r.UserStretches)
	}
	return os.WriteFile(filepath.Join(s.tmp, WhoRanFile), []byte(b.String()), 0o644)
}

// Finish writes the end records, closes the files and renames the
// directory to its final name: only a finished trace is complete.
func (s *Set) Finish() error {
	var errs []error
	for v, enc := range s.encs {
		errs = append(errs, enc.write(&event{kind: KindEnd, total: s.insns[v]}), enc.close(), s.files[v].Close())
	}
	errs = append(errs, s.writeWhoRan())
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

// Keep closes the files of a failed trace and leaves them in
// DIR.partial, without end records, for a developer to look at.
func (s *Set) Keep() {
	for v, enc := range s.encs {
		enc.close()
		s.files[v].Close()
	}
	s.writeWhoRan()
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
