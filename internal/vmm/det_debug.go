package vmm

// Diagnostics of the parallel recorder.
//
// SAMSARA_DEBUG_WRITES=FILE: the parallel recorder writes, after each
// commit, the hash of every page the chunk wrote; a replay given the same
// variable compares its memory after each chunk with those hashes and
// reports the first pages that differ: the first chunk whose committed
// memory replay does not reproduce. (It found the FPU state that
// KVM_SET_FPU did not restore on a squash: kvm_unsafe.go, kvmXsave.)

import (
	"fmt"
	"hash/fnv"
	"os"
	"strings"
)

var debugWrites = os.Getenv("SAMSARA_DEBUG_WRITES")

// debugWriteLog is the open SAMSARA_DEBUG_WRITES file of a recording, or
// the expectations of a replay (chunk index -> page -> hash).
var (
	debugWriteLog *os.File
	debugExpect   map[uint64]map[uint64]uint64
	debugReported int
)

func pageHash(mem []byte, p uint64) uint64 {
	h := fnv.New64a()
	h.Write(mem[p*4096 : (p+1)*4096])
	return h.Sum64()
}

// debugRecordWrites logs the pages chunk seq wrote.
func (m *Machine) debugRecordWrites(seq uint64, pages []uint64) {
	if debugWrites == "" {
		return
	}
	if debugWriteLog == nil {
		f, err := os.Create(debugWrites)
		if err != nil {
			return
		}
		debugWriteLog = f
	}
	for _, p := range pages {
		if (p+1)*4096 <= uint64(len(m.mem.mem)) {
			fmt.Fprintf(debugWriteLog, "%d %d %x\n", seq, p, pageHash(m.mem.mem, p))
		}
	}
}

// debugCheckWrites compares replay memory after chunk seq.
func (m *Machine) debugCheckWrites(seq uint64) {
	if debugWrites == "" || debugReported > 10 {
		return
	}
	if debugExpect == nil {
		debugExpect = map[uint64]map[uint64]uint64{}
		b, err := os.ReadFile(debugWrites)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			var c, p, h uint64
			if n, _ := fmt.Sscanf(line, "%d %d %x", &c, &p, &h); n == 3 {
				if debugExpect[c] == nil {
					debugExpect[c] = map[uint64]uint64{}
				}
				debugExpect[c][p] = h
			}
		}
	}
	for p, h := range debugExpect[seq] {
		if pageHash(m.mem.mem, p) != h {
			fmt.Fprintf(os.Stderr, "WRITE MISMATCH after chunk %d: page %#x\n", seq, p)
			debugReported++
		}
	}
}
