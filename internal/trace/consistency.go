package trace

import (
	"fmt"
	"slices"
)

// Mismatch is a load whose value is not what the trace says the byte
// held.
type Mismatch struct {
	Insn      Insn
	PA        uint64
	Got, Want byte
}

func (m Mismatch) String() string {
	return fmt.Sprintf("load at %d.%d rip %#x: byte %#x reads %#02x, the last store or first access left %#02x",
		m.Insn.Chunk, m.Insn.Index, m.Insn.RIP, m.PA, m.Got, m.Want)
}

// CheckConsistency replays the accesses with values (`trace --values`) of
// every vCPU's records in commit (chunk) order: every load must read what
// the last store to that guest-physical byte in the trace left, or,
// before any store, what the first access saw (the window's start
// value). A device's DMA and an interrupt's or exception's frame count as
// stores of their bytes. Untraced code (user code, a halt, a step that
// delivered an interrupt) may write anything, so each such event starts a
// new window; a device access and a task change write nothing. It returns
// the loads checked and the mismatches.
func CheckConsistency(recs [][]Record) (int, []Mismatch) {
	byChunk := map[uint32][]Record{}
	var order []uint32
	for v := range recs {
		for _, r := range recs[v] {
			if r.Kind == KindEnd {
				continue
			}
			if _, ok := byChunk[r.Insn.Chunk]; !ok {
				order = append(order, r.Insn.Chunk)
			}
			byChunk[r.Insn.Chunk] = append(byChunk[r.Insn.Chunk], r)
		}
	}
	slices.Sort(order)
	known := map[uint64]byte{}
	loads := 0
	var bad []Mismatch
	for _, c := range order {
		for _, r := range byChunk[c] {
			switch r.Kind {
			case KindInsn, KindChunk, KindTask, KindDevice:
			case KindDMA:
				for i, b := range r.DMA.Data {
					known[r.DMA.PA+uint64(i)] = b
				}
				continue
			case KindFrame:
				storeFrame(known, &r.Frame)
				continue
			default:
				clear(known)
				continue
			}
			for _, a := range r.Insn.Mem {
				if checkAccess(known, r.Insn, a, &bad) {
					loads++
				}
			}
		}
	}
	return loads, bad
}

// checkAccess checks one access against known and updates it; it
// reports whether the access was a checked load.
func checkAccess(known map[uint64]byte, in Insn, a Access, bad *[]Mismatch) bool {
	load := a.Flags&(AccessRead|AccessWrite) == AccessRead
	if a.Flags&AccessValue == 0 {
		if !load {
			// Written, value not recorded: unknown from here.
			for i := range uint64(a.Size) {
				delete(known, a.PA+i)
			}
		}
		return false
	}
	n := min(uint64(a.Size), 8)
	for i := range n {
		got := byte(a.Value >> (8 * i))
		want, seen := known[a.PA+i]
		if load && seen && want != got {
			*bad = append(*bad, Mismatch{Insn: in, PA: a.PA + i, Got: got, Want: want})
		}
		known[a.PA+i] = got
	}
	for i := n; i < uint64(a.Size) && !load; i++ {
		delete(known, a.PA+i)
	}
	return load
}

// storeFrame sets the bytes of a pushed frame as known, when it lies in
// one page (its physical address is that of its first byte only).
func storeFrame(known map[uint64]byte, f *Frame) {
	words := f.Words()
	if f.VA%4096+uint64(8*len(words)) > 4096 {
		return
	}
	for i, w := range words {
		for j := range uint64(8) {
			known[f.PA+uint64(8*i)+j] = byte(w >> (8 * j))
		}
	}
}
