package session

// Diagnostics of the parallel recorder (Options.DebugWrites).
//
// record --debug-writes FILE: the parallel recorder writes, after each
// commit, the hash of every page the chunk wrote; a replay given the same
// flag compares its memory after each chunk with those hashes and reports
// the first pages that differ: the first chunk whose committed memory
// replay does not reproduce. (It found the FPU state that KVM_SET_FPU did
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

// debugCheckWrites compares replay memory after chunk seq.
func (s *Session) debugCheckWrites(seq uint64) {
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
		for _, line := range strings.Split(string(b), "\n") {
			var c, p, h uint64
			if n, _ := fmt.Sscanf(line, "%d %d %x", &c, &p, &h); n == 3 {
				if d.expect[c] == nil {
					d.expect[c] = map[uint64]uint64{}
				}
				d.expect[c][p] = h
			}
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
