package snapshot

// Format versions 1 and 2 (doc.go): their metadata is a gob of
// internal/vmm's checkpointMeta as it was, which embedded gokvm's
// kvm.Regs, kvm.Sregs and kvm.VCPUEvents. gob matches struct fields by
// name and ignores the type names, so the structs below, of the same
// field names and compatible types, decode those files and encode new
// ones an older samsara reads. Regs, Sregs, Segment, Descriptor, FPU,
// Exception, Interrupt, NMI, Marks and Range already have gokvm's and
// vmm's field names; only the vCPU, its XSAVE area and the events differ.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
	"math"

	"github.com/klauspost/compress/zstd"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// gobMeta is version 1 and 2's checkpointMeta.
type gobMeta struct {
	CPUs     int
	Mem      uint64
	Cmdline  string
	HasDisk  bool
	GuestNow int64
	VCPUs    []gobVCPU
	LAPICs   []devices.LAPICState
	IOAPIC   devices.IOAPICState
	PIT      devices.PITState
	UART     devices.UARTState
	RTC      devices.RTCState
	PIC      devices.PICState
	Virtio   *devices.VirtioState
	Overlay  *devices.OverlayState
	Marks    Marks
	Spins    []Range
}

// gobVCPU is version 1 and 2's vcpuSnapshot.
type gobVCPU struct {
	Regs   Regs
	Sregs  Sregs
	FPU    FPU
	Xsave  *gobXsave
	MSRs   map[uint32]uint64
	Events gobEvents
	State  RunState
}

// gobXsave is vmm's kvmXsave: struct kvm_xsave as 32-bit words.
type gobXsave struct {
	Region [XsaveSize / 4]uint32
}

// gobEvents is gokvm's kvm.VCPUEvents.
type gobEvents struct {
	E                   Exception
	I                   Interrupt
	N                   NMI
	SipiVector          uint32
	Flags               uint32
	S                   gobSMI
	TripleFault         uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// gobSMI is gokvm's kvm.SMI ("Pening" sic).
type gobSMI struct {
	SMM          uint8
	Pening       uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// encodeGob encodes meta as version 1 and 2 did.
func encodeGob(meta *Meta) ([]byte, error) {
	g := gobMeta{
		CPUs: meta.CPUs, Mem: meta.Mem, Cmdline: meta.Cmdline, HasDisk: meta.HasDisk, GuestNow: meta.GuestNow,
		LAPICs: meta.LAPICs, IOAPIC: meta.IOAPIC, PIT: meta.PIT, UART: meta.UART, RTC: meta.RTC, PIC: meta.PIC,
		Virtio: meta.Virtio, Overlay: meta.Overlay, Marks: meta.Marks, Spins: meta.Spins,
	}
	for _, v := range meta.VCPUs {
		e := v.Events
		gv := gobVCPU{Regs: v.Regs, Sregs: v.Sregs, FPU: v.FPU, MSRs: v.MSRs, State: v.State, Events: gobEvents{
			E: e.Exception, I: e.Interrupt, N: e.NMI, SipiVector: e.SipiVector, Flags: e.Flags,
			S:           gobSMI{SMM: e.SMI.SMM, Pening: e.SMI.Pending, SMMInsideNMI: e.SMI.SMMInsideNMI, LatchedInit: e.SMI.LatchedInit},
			TripleFault: e.TripleFault, ExceptionHasPayload: e.ExceptionHasPayload, ExceptionPayload: e.ExceptionPayload,
		}}
		if len(v.Xsave) == XsaveSize {
			gv.Xsave = &gobXsave{}
			for i := range gv.Xsave.Region {
				gv.Xsave.Region[i] = binary.LittleEndian.Uint32(v.Xsave[4*i:])
			}
		}
		g.VCPUs = append(g.VCPUs, gv)
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&g); err != nil {
		return nil, fmt.Errorf("encode checkpoint metadata: %w", err)
	}
	return b.Bytes(), nil
}

// decodeGob decodes version 2 metadata.
func decodeGob(b []byte) (*Meta, error) {
	return decodeGobFrom(bytes.NewReader(b))
}

// decodeGobFrom decodes version 1 or 2 metadata from r.
func decodeGobFrom(r io.Reader) (*Meta, error) {
	var g gobMeta
	if err := gob.NewDecoder(r).Decode(&g); err != nil {
		return nil, err
	}
	meta := &Meta{
		CPUs: g.CPUs, Mem: g.Mem, Cmdline: g.Cmdline, HasDisk: g.HasDisk, GuestNow: g.GuestNow,
		LAPICs: g.LAPICs, IOAPIC: g.IOAPIC, PIT: g.PIT, UART: g.UART, RTC: g.RTC, PIC: g.PIC,
		Virtio: g.Virtio, Overlay: g.Overlay, Marks: g.Marks, Spins: g.Spins,
	}
	for _, gv := range g.VCPUs {
		e := gv.Events
		v := VCPU{Regs: gv.Regs, Sregs: gv.Sregs, FPU: gv.FPU, MSRs: gv.MSRs, State: gv.State, Events: Events{
			Exception: e.E, Interrupt: e.I, NMI: e.N, SipiVector: e.SipiVector, Flags: e.Flags,
			SMI:         SMI{SMM: e.S.SMM, Pending: e.S.Pening, SMMInsideNMI: e.S.SMMInsideNMI, LatchedInit: e.S.LatchedInit},
			TripleFault: e.TripleFault, ExceptionHasPayload: e.ExceptionHasPayload, ExceptionPayload: e.ExceptionPayload,
		}}
		if gv.Xsave != nil {
			v.Xsave = make([]byte, XsaveSize)
			for i, w := range gv.Xsave.Region {
				binary.LittleEndian.PutUint32(v.Xsave[4*i:], w)
			}
		}
		meta.VCPUs = append(meta.VCPUs, v)
	}
	return meta, nil
}

// endOfPages terminates version 1's page list.
const endOfPages = ^uint64(0)

// v1HeaderSize is version 1's magic and version.
const v1HeaderSize = 20

// writeV1 writes a version 1 file to w.
func writeV1(w io.Writer, meta *Meta, mem []byte, runs []Run) error {
	mb, err := encodeGob(meta)
	if err != nil {
		return err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var hdr [v1HeaderSize]byte
	copy(hdr[:], magic[:])
	binary.LittleEndian.PutUint32(hdr[16:], 1)
	if _, err := mw.Write(hdr[:]); err != nil {
		return err
	}
	zw, err := zstd.NewWriter(mw, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	bw.Write(mb)
	var pn [8]byte
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			binary.LittleEndian.PutUint64(pn[:], p)
			bw.Write(pn[:])
			bw.Write(mem[p*pageSize : (p+1)*pageSize])
		}
	}
	binary.LittleEndian.PutUint64(pn[:], endOfPages)
	bw.Write(pn[:])
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	_, err = w.Write(h.Sum(nil))
	return err
}

// readV1 reads a version 1 file: it checks the SHA-256 over the file in
// one pass, then decompresses it in a second (nothing is allocated from
// its contents before the digest matched, but for the gob metadata, which
// is bounded to MaxMetaBytes of the stream).
func readV1(r io.ReaderAt, size int64, alloc func(*Meta) ([]byte, error)) (*Meta, error) {
	if size < v1HeaderSize+sha256.Size {
		return nil, bad(ErrTruncated, "%d bytes, shorter than a header and digest", size)
	}
	body := size - sha256.Size
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, body)); err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var digest [sha256.Size]byte
	if _, err := r.ReadAt(digest[:], body); err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), digest[:]) {
		return nil, bad(ErrDigest, "SHA-256 mismatch (truncated or corrupted)")
	}
	// Version 1 was written with zstd's fastest level, an 8 MiB window.
	zr, err := zstd.NewReader(io.NewSectionReader(r, v1HeaderSize, body-v1HeaderSize),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, bad(ErrMalformed, "%v", err)
	}
	defer zr.Close()
	lim := &io.LimitedReader{R: zr, N: MaxMetaBytes}
	br := bufio.NewReaderSize(lim, 1<<20)
	meta, err := decodeGobFrom(br)
	if err != nil {
		return nil, bad(ErrMalformed, "metadata: %v", err)
	}
	if err := meta.check(); err != nil {
		return nil, err
	}
	lim.N = math.MaxInt64
	mem, err := alloc(meta)
	if err != nil {
		return nil, err
	}
	if uint64(len(mem)) < meta.Mem {
		return nil, fmt.Errorf("checkpoint: %d bytes of memory to restore %d into", len(mem), meta.Mem)
	}
	// Pages are stored once each, ascending, so a stream cannot make this
	// loop run longer than guest memory.
	var pn [8]byte
	next := uint64(0)
	for {
		if _, err := io.ReadFull(br, pn[:]); err != nil {
			return nil, bad(ErrTruncated, "memory: %v", err)
		}
		p := binary.LittleEndian.Uint64(pn[:])
		if p == endOfPages {
			break
		}
		if p < next || p >= meta.Mem/pageSize {
			return nil, bad(ErrMalformed, "page %d out of order or beyond guest memory", p)
		}
		if _, err := io.ReadFull(br, mem[p*pageSize:(p+1)*pageSize]); err != nil {
			return nil, bad(ErrTruncated, "memory: %v", err)
		}
		next = p + 1
	}
	return meta, nil
}
