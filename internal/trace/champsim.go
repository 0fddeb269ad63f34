package trace

import (
	"encoding/binary"

	"golang.org/x/arch/x86/x86asm"
)

// ChampSimRecordSize is sizeof(input_instr) in ChampSim's
// inc/trace_instruction.h: 8 + 1 + 1 + 2 + 4 + 2*8 + 4*8.
const ChampSimRecordSize = 64

// ChampSim register numbers (package comment): Pin's REG enum as
// ChampSim's tracer writes it; ChampSim's inc/trace_instruction.h names
// 6, 25 and 26.
const (
	champSP    = 6  // REG_STACK_POINTER
	champFlags = 25 // REG_FLAGS
	champIP    = 26 // REG_INSTRUCTION_POINTER
	// champXMM0 numbers XMM0-15 (ours; ChampSim only tracks dependencies).
	champXMM0 = 64
)

// champGPR maps RAX..R15 (x86 encoding order) to Pin's numbers:
// REG_RDI 3, RSI 4, RBP 5, RSP 6, RBX 7, RDX 8, RCX 9, RAX 10, R8-R15 11-18.
var champGPR = [16]uint8{10, 9, 8, 7, 6, 5, 4, 3, 11, 12, 13, 14, 15, 16, 17, 18}

// ChampSimRecord is one input_instr.
type ChampSimRecord struct {
	IP       uint64
	IsBranch uint8
	Taken    uint8
	DestRegs [2]uint8
	SrcRegs  [4]uint8
	DestMem  [2]uint64
	SrcMem   [4]uint64
}

// Marshal encodes r in input_instr's field order.
func (r *ChampSimRecord) Marshal(b []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, r.IP)
	b = append(b, r.IsBranch, r.Taken)
	b = append(b, r.DestRegs[:]...)
	b = append(b, r.SrcRegs[:]...)
	for _, m := range r.DestMem {
		b = le.AppendUint64(b, m)
	}
	for _, m := range r.SrcMem {
		b = le.AppendUint64(b, m)
	}
	return b
}

// UnmarshalChampSim decodes one 64-byte input_instr.
func UnmarshalChampSim(b []byte) ChampSimRecord {
	le := binary.LittleEndian
	r := ChampSimRecord{IP: le.Uint64(b), IsBranch: b[8], Taken: b[9]}
	copy(r.DestRegs[:], b[10:12])
	copy(r.SrcRegs[:], b[12:16])
	for i := range r.DestMem {
		r.DestMem[i] = le.Uint64(b[16+8*i:])
	}
	for i := range r.SrcMem {
		r.SrcMem[i] = le.Uint64(b[32+8*i:])
	}
	return r
}

// champEncoder writes ChampSim records.
type champEncoder struct {
	w   flusher
	buf []byte
}

func (c *champEncoder) write(e *event) error {
	if e.kind != KindInsn {
		return nil
	}
	r := ChampSimOf(e.insn)
	c.buf = r.Marshal(c.buf[:0])
	_, err := c.w.Write(c.buf)
	return err
}

func (c *champEncoder) close() error { return c.w.Flush() }

// regSet collects up to n distinct register numbers.
type regSet struct {
	r []uint8
	n int
}

func (s *regSet) add(r uint8) {
	if r == 0 || len(s.r) >= s.n {
		return
	}
	for _, x := range s.r {
		if x == r {
			return
		}
	}
	s.r = append(s.r, r)
}

// champReg is ChampSim's number for an x86asm register (0: none).
func champReg(r x86asm.Reg) uint8 {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return champGPR[r-x86asm.RAX]
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return champGPR[r-x86asm.EAX]
	case r >= x86asm.AX && r <= x86asm.R15W:
		return champGPR[r-x86asm.AX]
	case r >= x86asm.X0 && r <= x86asm.X15:
		return champXMM0 + uint8(r-x86asm.X0)
	case r == x86asm.RIP:
		return champIP
	}
	return 0
}
