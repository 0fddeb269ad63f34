package trace

import "golang.org/x/arch/x86/x86asm"

// ChampSimOf converts an instruction to ChampSim's record. Branch
// registers are chosen so that ChampSim's branch-type inference
// (inc/trace_instruction.h) finds the decoded kind: a conditional jump
// reads IP and FLAGS and writes IP; a call reads and writes SP and IP; a
// return reads SP and writes SP and IP; a jump writes IP (and reads its
// target register when indirect).
func ChampSimOf(in *Insn) ChampSimRecord {
	r := ChampSimRecord{IP: in.RIP}
	dst, src := &regSet{n: 2}, &regSet{n: 4}
	inst := in.Inst
	if IsBranch(inst) {
		r.IsBranch = 1
		if in.NextRIP != in.RIP+uint64(inst.Len) {
			r.Taken = 1
		}
		branchRegs(inst, dst, src)
	} else {
		for i, a := range inst.Args {
			switch a := a.(type) {
			case x86asm.Reg:
				if i == 0 && !readFirst[inst.Op] {
					dst.add(champReg(a))
				}
				if i > 0 || !writeOnly[inst.Op] {
					src.add(champReg(a))
				}
			case x86asm.Mem:
				src.add(champReg(a.Base))
				src.add(champReg(a.Index))
			}
		}
		if writesFlags(inst.Op) {
			dst.add(champFlags)
		}
	}
	copy(r.DestRegs[:], dst.r)
	copy(r.SrcRegs[:], src.r)
	nd, ns := 0, 0
	for _, a := range in.Mem {
		addr := a.PA
		if a.Flags&AccessUnmapped != 0 {
			addr = a.VA
		}
		if a.Flags&AccessWrite != 0 && nd < len(r.DestMem) {
			r.DestMem[nd] = addr
			nd++
		}
		if a.Flags&AccessRead != 0 && ns < len(r.SrcMem) {
			r.SrcMem[ns] = addr
			ns++
		}
	}
	return r
}

// branchRegs fills a branch's registers for ChampSim's inference.
func branchRegs(inst x86asm.Inst, dst, src *regSet) {
	indirect := func() {
		if len(inst.Args) > 0 && inst.Args[0] != nil {
			switch a := inst.Args[0].(type) {
			case x86asm.Reg:
				src.add(champReg(a))
			case x86asm.Mem:
				src.add(champReg(a.Base))
				src.add(champReg(a.Index))
			}
		}
	}
	dst.add(champIP)
	switch {
	case isJcc(inst.Op):
		src.add(champIP)
		src.add(champFlags)
	case inst.Op == x86asm.CALL:
		dst.add(champSP)
		src.add(champIP)
		src.add(champSP)
		indirect()
	case inst.Op == x86asm.RET:
		dst.add(champSP)
		src.add(champSP)
	case inst.Op == x86asm.JMP:
		indirect()
	default:
		// loops, JRCXZ, system calls, IRET: ChampSim's "other".
		src.add(champIP)
		src.add(champFlags)
		src.add(champGPR[1])
	}
}

// writesFlags reports the common arithmetic and logic instructions that
// set RFLAGS.
func writesFlags(op x86asm.Op) bool {
	switch op {
	case x86asm.ADD, x86asm.ADC, x86asm.SUB, x86asm.SBB, x86asm.CMP, x86asm.TEST, x86asm.AND, x86asm.OR,
		x86asm.XOR, x86asm.INC, x86asm.DEC, x86asm.NEG, x86asm.SHL, x86asm.SHR, x86asm.SAR, x86asm.ROL,
		x86asm.ROR, x86asm.BT, x86asm.BTS, x86asm.BTR, x86asm.BTC, x86asm.CMPXCHG, x86asm.XADD,
		x86asm.IMUL, x86asm.MUL, x86asm.POPFQ, x86asm.POPF, x86asm.BSF, x86asm.BSR, x86asm.TZCNT:
		return true
	}
	return false
}
