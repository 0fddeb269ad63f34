package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errShort is a record cut off by the end of the file.
var errShort = errors.New("trace record cut short")

// reader takes little-endian fields off a byte slice.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errShort
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}
func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }

// parseNative decodes a native trace body.
func parseNative(body []byte) ([]Record, error) {
	r := &reader{b: body}
	var out []Record
	for len(r.b) > 0 {
		rec := Record{Kind: r.u8()}
		in := &rec.Insn
		switch rec.Kind {
		case KindChunk:
			in.Chunk, in.RIP = r.u32(), r.u64()
		case KindInsn:
			in.Chunk, in.Index, in.RIP, in.CPL = r.u32(), r.u64(), r.u64(), r.u8()
			in.Bytes = append([]byte(nil), r.take(int(r.u8()))...)
			for range int(r.u8()) {
				a := Access{VA: r.u64(), PA: r.u64(), Size: r.u16(), Flags: r.u8()}
				if a.Flags&AccessValue != 0 {
					a.Value = r.u64()
				}
				in.Mem = append(in.Mem, a)
			}
		case KindInject:
			in.Chunk, in.Index, rec.Vector = r.u32(), r.u64(), r.u8()
		case KindUser, KindHalt, KindFault:
			in.Chunk, in.Index, in.RIP = r.u32(), r.u64(), r.u64()
		case KindTask:
			in.Chunk, in.Index = r.u32(), r.u64()
			t := &rec.Task
			t.Addr, t.PID, t.TGID = r.u64(), int32(r.u32()), int32(r.u32())
			t.Comm = string(r.take(int(r.u8())))
		case KindDevice:
			in.Chunk, in.Index = r.u32(), r.u64()
			d := &rec.Device
			flags := r.u8()
			d.MMIO, d.Write = flags&1 != 0, flags&2 != 0
			d.Addr, d.Size, d.Count = r.u64(), r.u8(), r.u16()
			d.Data = append([]byte(nil), r.take(int(r.u16()))...)
		case KindDMA:
			in.Chunk, in.Index = r.u32(), r.u64()
			rec.DMA.PA = r.u64()
			rec.DMA.Data = append([]byte(nil), r.take(int(r.u32()))...)
		case KindFrame:
			in.Chunk, in.Index = r.u32(), r.u64()
			f := &rec.Frame
			f.VA, f.PA = r.u64(), r.u64()
			w := make([]uint64, r.u8())
			for i := range w {
				w[i] = r.u64()
			}
			if len(w) != 5 && len(w) != 6 {
				return out, fmt.Errorf("frame record of %d words (5 or 6)", len(w))
			}
			if len(w) == 6 {
				f.HasError, f.Error, w = true, w[0], w[1:]
			}
			f.RIP, f.CS, f.RFLAGS, f.RSP, f.SS = w[0], w[1], w[2], w[3], w[4]
		case KindEnd:
			rec.Total = r.u64()
		default:
			return out, fmt.Errorf("unknown trace record kind %d", rec.Kind)
		}
		if r.err != nil {
			return out, r.err
		}
		out = append(out, rec)
	}
	if len(out) == 0 || out[len(out)-1].Kind != KindEnd {
		return out, errors.New("the trace has no end record: it is incomplete")
	}
	return out, nil
}
