package gdbstub

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Registers is one x86-64 CPU's state as gdb sees it: the registers of
// the target description (targetXML), in its order.
type Registers struct {
	// GPR are rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15: gdb's
	// amd64 order (gdb/features/i386/64bit-core.xml), not the hardware
	// encoding order.
	GPR    [16]uint64
	RIP    uint64
	EFLAGS uint32
	// Seg are the selectors of cs, ss, ds, es, fs, gs.
	Seg [6]uint32
	// ST are st0-st7, 80-bit extended precision (FXSAVE layout).
	ST [8][10]byte
	// FPUCtl are fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
	FPUCtl [8]uint32
	// XMM are xmm0-xmm15, little-endian.
	XMM   [16][16]byte
	MXCSR uint32
	// The system registers (feature org.samsara.x86.sys, for "info
	// registers cr3").
	FSBase, GSBase, CR0, CR2, CR3, CR4, EFER uint64
}

// regSizes are the byte sizes of the registers by gdb register number, in
// targetXML's order: 16 GPRs, rip, eflags, 6 selectors, 8 x87, 8 x87
// control, 16 xmm, mxcsr, fs_base, gs_base, cr0, cr2, cr3, cr4, efer.
var regSizes = func() []int {
	var s []int
	add := func(n, size int) {
		for i := 0; i < n; i++ {
			s = append(s, size)
		}
	}
	add(17, 8)
	add(7, 4)
	add(8, 10)
	add(8, 4)
	add(16, 16)
	add(1, 4)
	add(7, 8)
	return s
}()

// encode returns the registers in the 'g' packet's layout: every
// register by number, little-endian (GDB manual, E.2, 'g').
func (r *Registers) encode() []byte {
	var b []byte
	u64 := func(x uint64) { b = binary.LittleEndian.AppendUint64(b, x) }
	u32 := func(x uint32) { b = binary.LittleEndian.AppendUint32(b, x) }
	for _, x := range r.GPR {
		u64(x)
	}
	u64(r.RIP)
	u32(r.EFLAGS)
	for _, x := range r.Seg {
		u32(x)
	}
	for _, x := range r.ST {
		b = append(b, x[:]...)
	}
	for _, x := range r.FPUCtl {
		u32(x)
	}
	for _, x := range r.XMM {
		b = append(b, x[:]...)
	}
	u32(r.MXCSR)
	for _, x := range []uint64{r.FSBase, r.GSBase, r.CR0, r.CR2, r.CR3, r.CR4, r.EFER} {
		u64(x)
	}
	return b
}

// register returns register n's bytes ('p' packet), false if there is no
// such register.
func (r *Registers) register(n int) ([]byte, bool) {
	if n < 0 || n >= len(regSizes) {
		return nil, false
	}
	all := r.encode()
	off := 0
	for _, s := range regSizes[:n] {
		off += s
	}
	return all[off : off+regSizes[n]], true
}

// targetXML is the target description (GDB manual, G "Target
// Descriptions"): gdb's own amd64 core and sse features, whose register
// names and types gdb requires (gdb/features/i386/64bit-core.xml and
// 64bit-sse.xml), and a samsara feature with the segment bases, control
// registers and EFER, which gdb shows by name.
var targetXML = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">`)
	b.WriteString(`<architecture>i386:x86-64</architecture>`)
	b.WriteString(`<feature name="org.gnu.gdb.i386.core">`)
	b.WriteString(`<flags id="i386_eflags" size="4"><field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>` +
		`<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/><field name="ZF" start="6" end="6"/>` +
		`<field name="SF" start="7" end="7"/><field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>` +
		`<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/><field name="NT" start="14" end="14"/>` +
		`<field name="RF" start="16" end="16"/><field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>` +
		`<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/><field name="ID" start="21" end="21"/></flags>`)
	n := 0
	reg := func(name string, bits int, typ, group string) {
		g := ""
		if group != "" {
			g = fmt.Sprintf(` group="%s"`, group)
		}
		fmt.Fprintf(&b, `<reg name="%s" bitsize="%d" type="%s" regnum="%d"%s/>`, name, bits, typ, n, g)
		n++
	}
	for _, r := range []string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi"} {
		reg(r, 64, "int64", "")
	}
	reg("rbp", 64, "data_ptr", "")
	reg("rsp", 64, "data_ptr", "")
	for i := 8; i < 16; i++ {
		reg(fmt.Sprintf("r%d", i), 64, "int64", "")
	}
	reg("rip", 64, "code_ptr", "")
	reg("eflags", 32, "i386_eflags", "")
	for _, r := range []string{"cs", "ss", "ds", "es", "fs", "gs"} {
		reg(r, 32, "int32", "")
	}
	for i := 0; i < 8; i++ {
		reg(fmt.Sprintf("st%d", i), 80, "i387_ext", "")
	}
	for _, r := range []string{"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"} {
		reg(r, 32, "int", "float")
	}
	b.WriteString(`</feature><feature name="org.gnu.gdb.i386.sse">`)
	b.WriteString(`<vector id="v4f" type="ieee_single" count="4"/>` +
		`<vector id="v2d" type="ieee_double" count="2"/><vector id="v16i8" type="int8" count="16"/>` +
		`<vector id="v8i16" type="int16" count="8"/><vector id="v4i32" type="int32" count="4"/>` +
		`<vector id="v2i64" type="int64" count="2"/><union id="vec128"><field name="v4_float" type="v4f"/>` +
		`<field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>` +
		`<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>`)
	for i := 0; i < 16; i++ {
		reg(fmt.Sprintf("xmm%d", i), 128, "vec128", "vector")
	}
	reg("mxcsr", 32, "int", "vector")
	b.WriteString(`</feature><feature name="org.samsara.x86.sys">`)
	for _, r := range []string{"fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "efer"} {
		reg(r, 64, "int64", "system")
	}
	b.WriteString(`</feature></target>`)
	return b.String()
}()

// hexBytes is b in the protocol's hex.
func hexBytes(b []byte) string { return hex.EncodeToString(b) }
