package session

// Diagnostics of the parallel recorder (Options.DebugWrites).
//
// record --debug-writes FILE: the parallel recorder writes, after each
// commit, the hash of every page the chunk wrote, the vector injected at
// its start and its end registers; a replay given the same flag compares
// its memory after each chunk with those hashes and reports the first
// pages that differ (the first chunk whose committed memory replay does
// not reproduce), and names the registers or the interrupt that differ
// at a chunk's end. (It found the FPU state that KVM_SET_FPU did
// not restore on a squash: internal/kvm, Xsave.)

import (
	"fmt"
	"hash/fnv"
	"os"
	"strings"

	"go.uber.org/zap"
)

// maxWriteMismatches bounds the mismatches a replay reports: the first
// few name the chunk; the rest follow from them.
const maxWriteMismatches = 10

// writeHashes is the open file of a recording, or the expectations of a
// replay (chunk index -> page -> hash).
type writeHashes struct {
	out      *os.File
	expect   map[uint64]map[uint64]uint64
	ends     map[uint64]chunkEnd
	reported int
}

func pageHash(mem []byte, p uint64) uint64 {
	h := fnv.New64a()
	h.Write(mem[p*4096 : (p+1)*4096])
	return h.Sum64()
}

// debugRecordWrites logs the pages chunk seq wrote.
func (s *Session) debugRecordWrites(seq uint64, pages []uint64) {
	d := s.debugWrites
	if d == nil {
		return
	}
	if d.out == nil {
		f, err := os.Create(s.opts.DebugWrites)
		if err != nil {
			s.log.Warn("debug writes", zap.Error(err))
			s.debugWrites = nil
			return
		}
		d.out = f
	}
	mem := s.m.Memory()
	for _, p := range pages {
		if (p+1)*4096 <= uint64(len(mem)) {
			fmt.Fprintf(d.out, "%d %d %x\n", seq, p, pageHash(mem, p))
		}
	}
}

// debugCheckWrites compares replay memory after chunk seq, and the end
// of that chunk (run by v).
func (s *Session) debugCheckWrites(seq uint64, v *vcpu) {
	d := s.debugWrites
	if d == nil || d.reported > maxWriteMismatches {
		return
	}
	if d.expect == nil {
		d.expect = map[uint64]map[uint64]uint64{}
		b, err := os.ReadFile(s.opts.DebugWrites)
		if err != nil {
			s.log.Warn("debug writes", zap.Error(err))
			return
		}
		d.ends = map[uint64]chunkEnd{}
		for _, line := range strings.Split(string(b), "\n") {
			if seq, e, ok := parseChunkEnd(line); ok {
				d.ends[seq] = e
				continue
			}
			var c, p, h uint64
			if n, _ := fmt.Sscanf(line, "%d %d %x", &c, &p, &h); n == 3 {
				if d.expect[c] == nil {
					d.expect[c] = map[uint64]uint64{}
				}
				d.expect[c][p] = h
			}
		}
	}
	if want, ok := d.ends[seq]; ok {
		if diff := diffChunkEnd(want, v.debugEnd); diff != "" {
			s.log.Warn("chunk end mismatch", zap.Uint64("chunk", seq), zap.Int("vcpu", v.id), zap.String("diff", diff))
			d.reported++
		}
	}
	mem := s.m.Memory()
	for p, h := range d.expect[seq] {
		if pageHash(mem, p) != h {
			s.log.Warn("write mismatch", zap.Uint64("chunk", seq), zap.String("page", fmt.Sprintf("%#x", p)))
			d.reported++
		}
	}
}

// close closes the recording's file.
func (d *writeHashes) close() {
	if d != nil && d.out != nil {
		d.out.Close()
	}
}

// chunkEnd is what --debug-writes keeps of a chunk's end besides its
// pages: the vector injected at its first entry (-1: none) and the
// general registers, so that a replay whose chunk ends with other
// registers names which ones and whether its interrupt differed.
type chunkEnd struct {
	vec  int
	regs [18]uint64
	ok   bool // regs were read
	// exit is the exit the chunk ended at, with the data a read
	// returned (vmm.VCPU.ExitSummary; "" for a chunk that ended at a
	// preemption or privilege-change point): a read whose value differs
	// shows only in the next chunk's registers.
	exit string
}

// regNames name chunkEnd.regs in order (hashedRegs').
var regNames = [18]string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"}

func readChunkEnd(v *vcpu, vec int, atExit bool) chunkEnd {
	e := chunkEnd{vec: vec}
	if atExit {
		e.exit = v.ExitSummary()
	}
	if r, err := v.Regs(); err == nil {
		e.regs, e.ok = hashedRegs(r), true
	}
	return e
}

// keepDebugEnd keeps a replayed chunk's end for debugCheckWrites (on the
// vCPU's goroutine, where its registers are read).
func (v *vcpu) keepDebugEnd(c *chunkRun) {
	vec := -1
	for _, in := range c.injections {
		if in.exits == 0 {
			vec = int(in.vec)
			break
		}
	}
	v.debugEnd = readChunkEnd(v, vec, endsAtExit(c.want.Reason))
}

// debugRecordEnd logs a committed chunk's injection, end registers and
// the exit it ended at ("e SEQ VEC R0 ... R17 | EXIT", VEC -1 when none).
func (s *Session) debugRecordEnd(seq uint64, v *vcpu, injected bool, vec uint8, atExit bool) {
	d := s.debugWrites
	if d == nil || d.out == nil {
		return
	}
	iv := -1
	if injected {
		iv = int(vec)
	}
	e := readChunkEnd(v, iv, atExit)
	if !e.ok {
		return
	}
	fmt.Fprintf(d.out, "e %d %d", seq, e.vec)
	for _, r := range e.regs {
		fmt.Fprintf(d.out, " %x", r)
	}
	fmt.Fprintf(d.out, " | %s\n", e.exit)
}

// parseChunkEnd reads an "e" line; ok is false for any other line.
func parseChunkEnd(line string) (seq uint64, e chunkEnd, ok bool) {
	line, e.exit, _ = strings.Cut(line, " | ")
	f := strings.Fields(line)
	if len(f) != 3+len(e.regs) || f[0] != "e" {
		return 0, e, false
	}
	if _, err := fmt.Sscanf(f[1]+" "+f[2], "%d %d", &seq, &e.vec); err != nil {
		return 0, e, false
	}
	for i := range e.regs {
		if _, err := fmt.Sscanf(f[3+i], "%x", &e.regs[i]); err != nil {
			return 0, e, false
		}
	}
	e.ok = true
	return seq, e, true
}

// diffChunkEnd names what differs between a recorded and a replayed
// chunk end ("" when nothing does).
func diffChunkEnd(want, got chunkEnd) string {
	var b []string
	if want.vec != got.vec {
		b = append(b, fmt.Sprintf("injected vector %d, replayed %d (-1: none)", want.vec, got.vec))
	}
	if want.exit != got.exit {
		b = append(b, fmt.Sprintf("exit %q, replayed %q", want.exit, got.exit))
	}
	for i := range want.regs {
		if got.ok && want.regs[i] != got.regs[i] {
			b = append(b, fmt.Sprintf("%s %#x, replayed %#x", regNames[i], want.regs[i], got.regs[i]))
		}
	}
	return strings.Join(b, "; ")
}
