package trace

import (
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// textEncoder writes the text format (package comment).
type textEncoder struct {
	w    flusher
	vcpu int
	sb   strings.Builder
}

func (t *textEncoder) write(e *event) error {
	var err error
	switch e.kind {
	case KindChunk:
		_, err = fmt.Fprintf(t.w, "C chunk=%d vcpu=%d rip=%x\n", e.chunk, t.vcpu, e.rip)
	case KindInsn:
		_, err = t.w.Write([]byte(t.insnLine(e.insn)))
	case KindInject:
		_, err = fmt.Fprintf(t.w, "J %d.%d.%d vector=%d\n", e.chunk, t.vcpu, e.index, e.vec)
	case KindUser:
		_, err = fmt.Fprintf(t.w, "U %d.%d.%d rip=%x user code not traced on this platform (instruction count unknown)\n", e.chunk, t.vcpu, e.index, e.rip)
	case KindFault:
		_, err = fmt.Fprintf(t.w, "F %d.%d.%d rip=%x exception raised by this instruction (its frame follows when found)\n", e.chunk, t.vcpu, e.index, e.rip)
	case KindHalt:
		_, err = fmt.Fprintf(t.w, "H %d.%d.%d rip=%x halt, run without a step\n", e.chunk, t.vcpu, e.index, e.rip)
	case KindTask:
		k := e.task
		_, err = fmt.Fprintf(t.w, "T %d.%d.%d pid=%d tgid=%d comm=%q task=%x\n", e.chunk, t.vcpu, e.index, k.PID, k.TGID, k.Comm, k.Addr)
	case KindDevice:
		d := e.dev
		space, dir := "port", "in"
		if d.MMIO {
			space, dir = "mmio", "read"
		}
		if d.Write {
			dir = map[bool]string{false: "out", true: "write"}[d.MMIO]
		}
		_, err = fmt.Fprintf(t.w, "D %d.%d.%d %s %s addr=%x size=%d count=%d data=%x\n", e.chunk, t.vcpu, e.index, space, dir, d.Addr, d.Size, d.Count, d.Data)
	case KindDMA:
		_, err = fmt.Fprintf(t.w, "M %d.%d.%d dma pa=%x len=%d data=%x\n", e.chunk, t.vcpu, e.index, e.dma.PA, len(e.dma.Data), e.dma.Data)
	case KindFrame:
		f := e.frame
		errc := ""
		if f.HasError {
			errc = fmt.Sprintf(" error=%x", f.Error)
		}
		_, err = fmt.Fprintf(t.w, "P %d.%d.%d frame va=%x pa=%x%s rip=%x cs=%x rflags=%x rsp=%x ss=%x\n", e.chunk, t.vcpu, e.index, f.VA, f.PA, errc, f.RIP, f.CS, f.RFLAGS, f.RSP, f.SS)
	case KindEnd:
		_, err = fmt.Fprintf(t.w, "E instructions=%d\n", e.total)
	}
	return err
}

func (t *textEncoder) insnLine(in *Insn) string {
	sb := &t.sb
	sb.Reset()
	fmt.Fprintf(sb, "I %d.%d.%d rip=%x cpl=%d bytes=%x %q", in.Chunk, t.vcpu, in.Index, in.RIP, in.CPL, in.Bytes,
		x86asm.IntelSyntax(in.Inst, in.RIP, nil))
	for _, a := range in.Mem {
		rw := ""
		if a.Flags&AccessRead != 0 {
			rw += "r"
		}
		if a.Flags&AccessWrite != 0 {
			rw += "w"
		}
		if a.Flags&AccessUnmapped != 0 {
			fmt.Fprintf(sb, " %s:va=%x,pa=unmapped,%d", rw, a.VA, a.Size)
			continue
		}
		fmt.Fprintf(sb, " %s:va=%x,pa=%x,%d", rw, a.VA, a.PA, a.Size)
		if a.Flags&AccessValue != 0 {
			fmt.Fprintf(sb, ",=%x", a.Value)
		}
	}
	sb.WriteByte('\n')
	return sb.String()
}

func (t *textEncoder) close() error { return t.w.Flush() }
