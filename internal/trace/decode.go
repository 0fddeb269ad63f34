package trace

import (
	"fmt"
	"math/bits"

	"golang.org/x/arch/x86/x86asm"
)

// Regs are the registers an instruction's operands are computed from,
// read before it executes.
type Regs struct {
	// GPR are RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15 (the x86
	// encoding order, Intel SDM vol. 2, table 2-2).
	GPR            [16]uint64
	RIP            uint64
	FSBase, GSBase uint64
}

// Access flags (the native format's flags byte).
const (
	AccessRead     = 1
	AccessWrite    = 2
	AccessUnmapped = 4
	// AccessValue: Value holds the bytes accessed (`trace --values`).
	AccessValue = 8
)

// Access is one memory access of an instruction.
type Access struct {
	VA, PA uint64
	Size   uint16
	Flags  uint8
	// Value is the first min(Size, 8) bytes accessed, little-endian
	// (AccessValue): read before the instruction for a load, after it for
	// a store or a read-modify-write.
	Value uint64
}

// Insn is one executed instruction.
type Insn struct {
	Chunk uint32
	Index uint64
	RIP   uint64
	CPL   uint8
	Bytes []byte
	Mem   []Access
	// Inst is the decoded instruction (not stored in the native format).
	Inst x86asm.Inst
	// NextRIP is the RIP after it executed (ChampSim's taken flag).
	NextRIP uint64
}

// Decode decodes the instruction at the start of code (64-bit mode) and
// its memory accesses, with virtual addresses from r; translate maps a
// virtual address to a guest-physical one (ok false when unmapped).
// Implicit stack accesses (PUSH, POP, CALL, RET, LEAVE, PUSHF, POPF) are
// included; string instructions give one iteration's accesses.
func Decode(code []byte, r *Regs, translate func(va uint64) (uint64, bool)) (x86asm.Inst, []Access, error) {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return inst, nil, fmt.Errorf("decode % x at %#x: %w", code, r.RIP, err)
	}
	var acc []Access
	add := func(va uint64, size int, flags uint8) {
		a := Access{VA: va, Size: uint16(size), Flags: flags}
		if pa, ok := translate(va); ok {
			a.PA = pa
		} else {
			a.Flags |= AccessUnmapped
		}
		acc = append(acc, a)
	}
	if noAccess[inst.Op] {
		return inst, nil, nil
	}
	for i, arg := range inst.Args {
		m, ok := arg.(x86asm.Mem)
		if !ok {
			continue
		}
		size := inst.MemBytes
		if n, ok := StringElement[inst.Op]; ok {
			size = n
		}
		add(memAddr(m, r, uint64(inst.Len))+bitBaseOffset(inst, r), size, memFlags(inst.Op, i))
	}
	rsp := r.GPR[4]
	switch inst.Op {
	case x86asm.PUSH, x86asm.CALL, x86asm.PUSHF, x86asm.PUSHFQ:
		add(rsp-8, 8, AccessWrite)
	case x86asm.POP, x86asm.RET, x86asm.POPF, x86asm.POPFQ:
		add(rsp, 8, AccessRead)
	case x86asm.LEAVE:
		add(r.GPR[5], 8, AccessRead)
	case x86asm.IRETQ:
		// RIP, CS, RFLAGS, RSP, SS (SDM vol. 2, IRET).
		add(rsp, 40, AccessRead)
	}
	return inst, acc, nil
}

// StringElement is the element size of the string instructions, whose
// operands x86asm gives no size (MemBytes 0). A step of a REP-prefixed
// one may run several iterations (KVM's emulator batches them: det.go,
// atRepString); the session widens the access to what the step did.
var StringElement = map[x86asm.Op]int{
	x86asm.STOSB: 1, x86asm.STOSW: 2, x86asm.STOSD: 4, x86asm.STOSQ: 8,
	x86asm.MOVSB: 1, x86asm.MOVSW: 2, x86asm.MOVSD: 4, x86asm.MOVSQ: 8,
	x86asm.LODSB: 1, x86asm.LODSW: 2, x86asm.LODSD: 4, x86asm.LODSQ: 8,
	x86asm.CMPSB: 1, x86asm.CMPSW: 2, x86asm.CMPSD: 4, x86asm.CMPSQ: 8,
	x86asm.SCASB: 1, x86asm.SCASW: 2, x86asm.SCASD: 4, x86asm.SCASQ: 8,
	x86asm.INSB: 1, x86asm.INSW: 2, x86asm.INSD: 4,
	x86asm.OUTSB: 1, x86asm.OUTSW: 2, x86asm.OUTSD: 4,
}

// noAccess are instructions whose memory operand is not accessed.
var noAccess = map[x86asm.Op]bool{
	x86asm.LEA: true, x86asm.NOP: true, x86asm.PREFETCHNTA: true, x86asm.PREFETCHT0: true,
	x86asm.PREFETCHT1: true, x86asm.PREFETCHT2: true, x86asm.PREFETCHW: true, x86asm.INVLPG: true,
	x86asm.CLFLUSH: true,
}

// writeOnly are instructions that only write their first (destination)
// operand; readFirst those that only read it.
var (
	writeOnly = map[x86asm.Op]bool{
		x86asm.MOV: true, x86asm.MOVNTI: true, x86asm.MOVAPS: true, x86asm.MOVUPS: true, x86asm.MOVAPD: true,
		x86asm.MOVUPD: true, x86asm.MOVDQA: true, x86asm.MOVDQU: true, x86asm.MOVQ: true, x86asm.MOVD: true,
		x86asm.STOSB: true, x86asm.STOSW: true, x86asm.STOSD: true, x86asm.STOSQ: true,
		x86asm.MOVSB: true, x86asm.MOVSW: true, x86asm.MOVSD: true, x86asm.MOVSQ: true,
		x86asm.SETA: true, x86asm.SETAE: true, x86asm.SETB: true, x86asm.SETBE: true, x86asm.SETE: true,
		x86asm.SETG: true, x86asm.SETGE: true, x86asm.SETL: true, x86asm.SETLE: true, x86asm.SETNE: true,
		x86asm.SETNO: true, x86asm.SETNP: true, x86asm.SETNS: true, x86asm.SETO: true, x86asm.SETP: true,
		x86asm.SETS: true, x86asm.POP: true, x86asm.FXSAVE64: true, x86asm.FXSAVE: true, x86asm.SGDT: true,
		x86asm.SIDT: true, x86asm.STMXCSR: true, x86asm.FNSTCW: true, x86asm.FNSTSW: true,
	}
	readFirst = map[x86asm.Op]bool{
		x86asm.CMP: true, x86asm.TEST: true, x86asm.PUSH: true, x86asm.BT: true, x86asm.CALL: true,
		x86asm.JMP: true, x86asm.CMPSB: true, x86asm.CMPSW: true, x86asm.CMPSD: true, x86asm.CMPSQ: true,
		x86asm.SCASB: true, x86asm.SCASW: true, x86asm.SCASD: true, x86asm.SCASQ: true, x86asm.LGDT: true,
		x86asm.LIDT: true, x86asm.FXRSTOR64: true, x86asm.FXRSTOR: true, x86asm.LDMXCSR: true,
		x86asm.FLDCW: true, x86asm.UCOMISS: true, x86asm.UCOMISD: true,
	}
)

// memFlags is whether operand i (Intel order: destination first) of op is
// read, written or both. Operands after the first are read; the first is
// read and written unless op only writes or only reads it.
func memFlags(op x86asm.Op, i int) uint8 {
	switch {
	case i > 0:
		return AccessRead
	case writeOnly[op]:
		return AccessWrite
	case readFirst[op]:
		return AccessRead
	}
	return AccessRead | AccessWrite
}

// bitBaseOffset is how far from its memory operand a bit test (BT, BTS,
// BTR, BTC) with a register bit offset reaches: the offset is signed and
// not reduced modulo the operand size, so the operand accessed lies
// operand-size*floor(offset/bits) bytes from the one encoded (Intel SDM
// vol. 2, BT, "bit base" and table 3-2). Linux's set_bit and clear_bit
// with a variable bit number are such instructions (a `lock btsq
// %reg,(mem)`): measured in TestTraceMemoryConsistency, a bitmap byte that
// a BTR cleared was recorded at the bitmap's base and a later load of it
// looked inconsistent. With an immediate offset it is 0.
func bitBaseOffset(inst x86asm.Inst, r *Regs) uint64 {
	switch inst.Op {
	case x86asm.BT, x86asm.BTS, x86asm.BTR, x86asm.BTC:
	default:
		return 0
	}
	reg, ok := inst.Args[1].(x86asm.Reg)
	if _, mem := inst.Args[0].(x86asm.Mem); !mem || !ok || inst.MemBytes == 0 {
		return 0
	}
	var raw uint64
	switch {
	case reg >= x86asm.RAX && reg <= x86asm.R15:
		raw = r.GPR[reg-x86asm.RAX]
	case reg >= x86asm.EAX && reg <= x86asm.R15L:
		raw = r.GPR[reg-x86asm.EAX]
	case reg >= x86asm.AX && reg <= x86asm.R15W:
		raw = r.GPR[reg-x86asm.AX]
	default:
		return 0
	}
	// The offset register has the operand's width: sign-extend it, then
	// divide by the width with an arithmetic shift (floor division, for a
	// negative offset too).
	width := uint(inst.MemBytes) * 8
	off := int64(raw<<(64-width)) >> (64 - width)
	return uint64((off >> bits.TrailingZeros(width)) * int64(inst.MemBytes))
}

// memAddr is the virtual address of memory operand m; n is the
// instruction's length (RIP-relative addressing counts from its end).
func memAddr(m x86asm.Mem, r *Regs, n uint64) uint64 {
	a := uint64(m.Disp)
	if m.Base != 0 {
		a += regValue(m.Base, r, n)
	}
	if m.Index != 0 {
		a += uint64(m.Scale) * regValue(m.Index, r, n)
	}
	switch m.Segment {
	case x86asm.FS:
		a += r.FSBase
	case x86asm.GS:
		a += r.GSBase
	}
	return a
}

// regValue is the value of a base or index register (64- or 32-bit).
func regValue(reg x86asm.Reg, r *Regs, n uint64) uint64 {
	switch {
	case reg == x86asm.RIP:
		return r.RIP + n
	case reg == x86asm.EIP:
		return uint64(uint32(r.RIP + n))
	case reg >= x86asm.RAX && reg <= x86asm.R15:
		return r.GPR[reg-x86asm.RAX]
	case reg >= x86asm.EAX && reg <= x86asm.R15L:
		return uint64(uint32(r.GPR[reg-x86asm.EAX]))
	}
	return 0
}

// IsBranch reports whether inst changes the control flow (jumps, calls,
// returns, loops, system calls and returns from them).
func IsBranch(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.JMP, x86asm.CALL, x86asm.RET, x86asm.LRET, x86asm.IRETQ, x86asm.IRET, x86asm.IRETD,
		x86asm.SYSCALL, x86asm.SYSRET, x86asm.SYSENTER, x86asm.SYSEXIT, x86asm.LOOP, x86asm.LOOPE,
		x86asm.LOOPNE, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ, x86asm.INT, x86asm.UD1, x86asm.UD2:
		return inst.Op != x86asm.UD1 && inst.Op != x86asm.UD2
	}
	return isJcc(inst.Op)
}

// isJcc reports a conditional jump on flags.
func isJcc(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE, x86asm.JL,
		x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS:
		return true
	}
	return false
}
