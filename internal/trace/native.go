package trace

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Magic and Version start a native trace file (package comment).
const (
	Magic = "SMTRACE\x00"
	// Version: bump it when a record's layout changes.
	Version = 3
)

// nativeEncoder writes the native format.
type nativeEncoder struct {
	out flusher
	z   *zstd.Encoder
	buf []byte
}

func newNativeEncoder(out flusher, v int) (*nativeEncoder, error) {
	hdr := make([]byte, 0, 16)
	hdr = append(hdr, Magic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, Version)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(v))
	if _, err := out.Write(hdr); err != nil {
		return nil, fmt.Errorf("write the trace header: %w", err)
	}
	// One encoder goroutine: two expansions must give the same bytes.
	z, err := zstd.NewWriter(out, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return &nativeEncoder{out: out, z: z}, nil
}

func (n *nativeEncoder) write(e *event) error {
	le := binary.LittleEndian
	b := append(n.buf[:0], e.kind)
	switch e.kind {
	case KindChunk:
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.rip)
	case KindInsn:
		in := e.insn
		b = le.AppendUint32(b, in.Chunk)
		b = le.AppendUint64(b, in.Index)
		b = le.AppendUint64(b, in.RIP)
		b = append(b, in.CPL, uint8(len(in.Bytes)))
		b = append(b, in.Bytes...)
		b = append(b, uint8(len(in.Mem)))
		for _, a := range in.Mem {
			b = le.AppendUint64(b, a.VA)
			b = le.AppendUint64(b, a.PA)
			b = le.AppendUint16(b, a.Size)
			b = append(b, a.Flags)
			if a.Flags&AccessValue != 0 {
				b = le.AppendUint64(b, a.Value)
			}
		}
	case KindInject:
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		b = append(b, e.vec)
	case KindUser, KindHalt, KindFault:
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		b = le.AppendUint64(b, e.rip)
	case KindTask:
		t := e.task
		comm := t.Comm
		if len(comm) > 255 {
			comm = comm[:255]
		}
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		b = le.AppendUint64(b, t.Addr)
		b = le.AppendUint32(b, uint32(t.PID))
		b = le.AppendUint32(b, uint32(t.TGID))
		b = append(b, uint8(len(comm)))
		b = append(b, comm...)
	case KindDevice:
		d := e.dev
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		var flags uint8
		if d.MMIO {
			flags |= 1
		}
		if d.Write {
			flags |= 2
		}
		b = append(b, flags)
		b = le.AppendUint64(b, d.Addr)
		b = append(b, d.Size)
		b = le.AppendUint16(b, d.Count)
		b = le.AppendUint16(b, uint16(len(d.Data)))
		b = append(b, d.Data...)
	case KindDMA:
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		b = le.AppendUint64(b, e.dma.PA)
		b = le.AppendUint32(b, uint32(len(e.dma.Data)))
		b = append(b, e.dma.Data...)
	case KindFrame:
		f := e.frame
		b = le.AppendUint32(b, e.chunk)
		b = le.AppendUint64(b, e.index)
		b = le.AppendUint64(b, f.VA)
		b = le.AppendUint64(b, f.PA)
		words := f.Words()
		b = append(b, uint8(len(words)))
		for _, w := range words {
			b = le.AppendUint64(b, w)
		}
	case KindEnd:
		b = le.AppendUint64(b, e.total)
	}
	n.buf = b
	_, err := n.z.Write(b)
	return err
}

func (n *nativeEncoder) close() error {
	if err := n.z.Close(); err != nil {
		return err
	}
	return n.out.Flush()
}

// Record is one decoded native record (Kind says which fields are set).
type Record struct {
	Kind   uint8
	Insn   Insn
	Vector uint8
	Total  uint64
	// Task is KindTask's task.
	Task Task
	// Device, DMA and Frame are those records' contents.
	Device Device
	DMA    DMA
	Frame  Frame
}

// ReadNative reads a native trace file: its vCPU and its records. A file
// that does not end with KindEnd is an error (an incomplete trace).
func ReadNative(r io.Reader) (int, []Record, error) {
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, fmt.Errorf("trace header: %w", err)
	}
	if string(hdr[:8]) != Magic {
		return 0, nil, fmt.Errorf("not a samsara trace (magic %q)", hdr[:8])
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		return 0, nil, fmt.Errorf("trace version %d, this samsara reads %d", v, Version)
	}
	z, err := zstd.NewReader(r)
	if err != nil {
		return 0, nil, fmt.Errorf("zstd: %w", err)
	}
	defer z.Close()
	body, err := io.ReadAll(z)
	if err != nil {
		return 0, nil, fmt.Errorf("trace body: %w", err)
	}
	recs, err := parseNative(body)
	return int(binary.LittleEndian.Uint32(hdr[12:])), recs, err
}
