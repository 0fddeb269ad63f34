package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file is the record encoding: the field order of each kind below is
// part of the file format (see doc.go). Changing it needs a Version bump.

// codec is implemented by every record type of this package.
type codec interface {
	Record
	// appendFields appends the record's fields (not the kind byte).
	appendFields(b []byte) []byte
	// decode reads the fields written by appendFields into the record.
	decode(d *decoder)
	// validate checks the values against the recording's vCPU count;
	// the Writer calls it before encoding, the Reader after decoding.
	validate(cpus uint32) error
}

// ErrUnknownKind is wrapped by the error for a record kind this version of
// the format does not define.
var ErrUnknownKind = errors.New("unknown record kind")

func appendPoint(b []byte, p Point) []byte {
	b = binary.AppendUvarint(b, p.UserBranches)
	b = binary.AppendUvarint(b, p.KernelInsns)
	// Zig-zag: sign-extended kernel addresses stay short (see doc.go).
	b = binary.AppendVarint(b, int64(p.RIP))
	b = binary.AppendVarint(b, int64(p.RCX))
	return binary.LittleEndian.AppendUint64(b, p.Regs)
}

func (d *decoder) point() Point {
	return Point{
		UserBranches: d.uvarint(),
		KernelInsns:  d.uvarint(),
		RIP:          uint64(d.varint()),
		RCX:          uint64(d.varint()),
		Regs:         d.u64fixed(),
	}
}

func checkVCPU(v, cpus uint32) error {
	if v >= cpus {
		return fmt.Errorf("vcpu %d out of range (recording has %d)", v, cpus)
	}
	return nil
}

// --- Chunk: vcpu uvarint, end point, reason byte, squashes uvarint,
// exits uvarint, guest microseconds uvarint (since Version 5).

func (c *Chunk) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(c.VCPU))
	b = appendPoint(b, c.End)
	b = append(b, byte(c.Reason))
	b = binary.AppendUvarint(b, uint64(c.Squashes))
	b = binary.AppendUvarint(b, uint64(c.Exits))
	return binary.AppendUvarint(b, uint64(c.GuestMicros))
}

func (c *Chunk) decode(d *decoder) {
	c.VCPU = d.u32()
	c.End = d.point()
	c.Reason = Reason(d.u8())
	c.Squashes = d.u32()
	c.Exits = d.u32()
	c.GuestMicros = d.u32()
}

func (c *Chunk) validate(cpus uint32) error {
	if !c.Reason.Valid() {
		return fmt.Errorf("chunk end %v is not a defined reason", c.Reason)
	}
	return checkVCPU(c.VCPU, cpus)
}

// --- PIORead: vcpu uvarint, port uvarint, size byte, value uvarint.

func (p *PIORead) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(p.VCPU))
	b = binary.AppendUvarint(b, uint64(p.Port))
	b = append(b, p.Size)
	return binary.AppendUvarint(b, p.Value)
}

func (p *PIORead) decode(d *decoder) {
	p.VCPU = d.u32()
	p.Port = uint16(d.bounded(math.MaxUint16, "port"))
	p.Size = d.u8()
	p.Value = d.uvarint()
}

func (p *PIORead) validate(cpus uint32) error { return checkVCPU(p.VCPU, cpus) }

// --- MMIORead: vcpu uvarint, addr uvarint, size byte, value uvarint.

func (m *MMIORead) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(m.VCPU))
	b = binary.AppendUvarint(b, m.Addr)
	b = append(b, m.Size)
	return binary.AppendUvarint(b, m.Value)
}

func (m *MMIORead) decode(d *decoder) {
	m.VCPU = d.u32()
	m.Addr = d.uvarint()
	m.Size = d.u8()
	m.Value = d.uvarint()
}

func (m *MMIORead) validate(cpus uint32) error { return checkVCPU(m.VCPU, cpus) }

// --- Interrupt: vcpu uvarint, vector byte, point.

func (i *Interrupt) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(i.VCPU))
	b = append(b, i.Vector)
	return appendPoint(b, i.At)
}

func (i *Interrupt) decode(d *decoder) {
	i.VCPU = d.u32()
	i.Vector = d.u8()
	i.At = d.point()
}

func (i *Interrupt) validate(cpus uint32) error { return checkVCPU(i.VCPU, cpus) }

// --- DiskCompletion: seq uvarint, vcpu uvarint, point.

func (c *DiskCompletion) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, c.Seq)
	b = binary.AppendUvarint(b, uint64(c.VCPU))
	return appendPoint(b, c.At)
}

func (c *DiskCompletion) decode(d *decoder) {
	c.Seq = d.uvarint()
	c.VCPU = d.u32()
	c.At = d.point()
}

func (c *DiskCompletion) validate(cpus uint32) error { return checkVCPU(c.VCPU, cpus) }

// --- ConsoleInput: length uvarint, bytes.

func (c *ConsoleInput) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(c.Data)))
	return append(b, c.Data...)
}

func (c *ConsoleInput) decode(d *decoder) { c.Data = d.bytes() }

func (*ConsoleInput) validate(uint32) error { return nil }

// --- StateStop: vcpu uvarint, arch length uvarint + bytes, code page
// uvarint, exit registers uvarint, page count uvarint, page-number deltas uvarint (the first from 0), page bytes.

func (s *StateStop) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.VCPU))
	b = binary.AppendUvarint(b, uint64(len(s.Arch)))
	b = append(b, s.Arch...)
	b = binary.AppendUvarint(b, s.CodePage)
	b = binary.AppendUvarint(b, s.ExitRegs)
	b = binary.AppendUvarint(b, uint64(len(s.Pages)))
	prev := uint64(0)
	for _, p := range s.Pages {
		b = binary.AppendUvarint(b, p-prev)
		prev = p
	}
	return append(b, s.Data...)
}

func (s *StateStop) decode(d *decoder) {
	s.VCPU = d.u32()
	s.Arch = d.bytes()
	s.CodePage = d.uvarint()
	s.ExitRegs = d.uvarint()
	// Each page takes at least its delta byte and its 4 KiB.
	n := d.count(PageSize+1, "state stop page count")
	if d.err != nil {
		return
	}
	s.Pages = make([]uint64, 0, n)
	prev := uint64(0)
	for range n {
		delta := d.uvarint()
		if len(s.Pages) > 0 && delta == 0 {
			d.fail("state stop page %d repeated", prev)
			return
		}
		prev += delta
		s.Pages = append(s.Pages, prev)
	}
	size := int(n) * PageSize
	if d.err != nil || d.remaining() < size {
		d.fail("state stop page data truncated")
		return
	}
	s.Data = d.b[d.off : d.off+size : d.off+size]
	if !d.alias {
		s.Data = append([]byte(nil), s.Data...)
	}
	d.off += size
}

func (s *StateStop) validate(cpus uint32) error {
	if len(s.Arch) == 0 && len(s.Pages) == 0 {
		// Only the last record of a split stop has the state, and
		// every earlier one has pages.
		return fmt.Errorf("state stop with neither a state nor pages")
	}
	if len(s.Data) != len(s.Pages)*PageSize {
		return fmt.Errorf("state stop with %d pages and %d bytes of page data", len(s.Pages), len(s.Data))
	}
	for i := 1; i < len(s.Pages); i++ {
		if s.Pages[i] <= s.Pages[i-1] {
			return fmt.Errorf("state stop pages not ascending (%d after %d)", s.Pages[i], s.Pages[i-1])
		}
	}
	return checkVCPU(s.VCPU, cpus)
}

// --- Time: vcpu uvarint, nanos varint.

func (t *Time) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(t.VCPU))
	return binary.AppendVarint(b, t.Nanos)
}

func (t *Time) decode(d *decoder) {
	t.VCPU = d.u32()
	t.Nanos = d.varint()
}

func (t *Time) validate(cpus uint32) error { return checkVCPU(t.VCPU, cpus) }

// --- Digest: seq uvarint, vcpu count uvarint, 32 bytes per vCPU, 32 bytes
// of memory hash.

func (g *Digest) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, g.Seq)
	b = binary.AppendUvarint(b, uint64(len(g.VCPUs)))
	for i := range g.VCPUs {
		b = append(b, g.VCPUs[i][:]...)
	}
	return append(b, g.Memory[:]...)
}

func (g *Digest) decode(d *decoder) {
	g.Seq = d.uvarint()
	// Bound the count by the bytes left before allocating for it.
	n := d.count(32, "digest vcpu count")
	if d.err != nil {
		return
	}
	if d.alias {
		g.VCPUs = g.VCPUs[:0] // reuse the scratch record's array
	} else {
		g.VCPUs = make([][32]byte, 0, n)
	}
	for range n {
		g.VCPUs = append(g.VCPUs, d.hash())
	}
	g.Memory = d.hash()
}

func (g *Digest) validate(cpus uint32) error {
	if uint64(len(g.VCPUs)) != uint64(cpus) {
		return fmt.Errorf("digest %d has %d vcpu hashes, recording has %d vcpus", g.Seq, len(g.VCPUs), cpus)
	}
	return nil
}

// --- End: exit code varint, reason length uvarint, reason bytes, guest
// nanoseconds uvarint.

func (e *End) appendFields(b []byte) []byte {
	b = binary.AppendVarint(b, int64(e.ExitCode))
	b = binary.AppendUvarint(b, uint64(len(e.Reason)))
	b = append(b, e.Reason...)
	return binary.AppendUvarint(b, e.GuestNanos)
}

func (e *End) decode(d *decoder) {
	c := d.varint()
	if c < math.MinInt32 || c > math.MaxInt32 {
		d.fail("exit code %d overflows int32", c)
	}
	e.ExitCode = int32(c)
	if s := d.bytes(); !d.alias {
		e.Reason = string(s)
	}
	e.GuestNanos = d.uvarint()
}

func (*End) validate(uint32) error { return nil }

// --- RecorderStats: tracker length uvarint, tracker bytes; vcpu count
// uvarint (== CPUs), then per vCPU commits, squashes, exclusive runs,
// committed work, re-executed work (5 uvarints); bucket count uvarint (<=
// NumSizeBuckets), then per non-empty bucket its index uvarint (strictly
// increasing, < NumSizeBuckets) and its count uvarint (> 0). Empty buckets
// are left out, which keeps a typical histogram to a dozen pairs instead of
// 65 counts, and the rules make the encoding of a histogram unique.

func (r *RecorderStats) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Tracker)))
	b = append(b, r.Tracker...)
	b = binary.AppendUvarint(b, uint64(len(r.VCPUs)))
	for _, v := range r.VCPUs {
		b = binary.AppendUvarint(b, v.Commits)
		b = binary.AppendUvarint(b, v.Squashes)
		b = binary.AppendUvarint(b, v.ExclusiveRuns)
		b = binary.AppendUvarint(b, v.CommittedWork)
		b = binary.AppendUvarint(b, v.ReexecutedWork)
	}
	n := 0
	for _, c := range r.ChunkSizes {
		if c != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i, c := range r.ChunkSizes {
		if c != 0 {
			b = binary.AppendUvarint(b, uint64(i))
			b = binary.AppendUvarint(b, c)
		}
	}
	return b
}

func (r *RecorderStats) decode(d *decoder) {
	if s := d.bytes(); !d.alias {
		r.Tracker = string(s)
	}
	// Each vCPU takes at least 5 bytes (one per uvarint): bound the count
	// by the bytes left before allocating for it.
	n := d.count(5, "recorder stats vcpu count")
	if d.err != nil {
		return
	}
	if d.alias {
		r.VCPUs = r.VCPUs[:0] // reuse the scratch record's array
	} else {
		r.VCPUs = make([]RecorderVCPUStats, 0, n)
	}
	for range n {
		r.VCPUs = append(r.VCPUs, RecorderVCPUStats{
			Commits:        d.uvarint(),
			Squashes:       d.uvarint(),
			ExclusiveRuns:  d.uvarint(),
			CommittedWork:  d.uvarint(),
			ReexecutedWork: d.uvarint(),
		})
	}
	r.ChunkSizes = SizeHistogram{}
	m := d.bounded(NumSizeBuckets, "chunk size bucket count")
	next := uint64(0) // smallest index the next bucket may have
	for range m {
		i := d.bounded(NumSizeBuckets-1, "chunk size bucket")
		c := d.uvarint()
		if d.err != nil {
			return
		}
		if i < next {
			d.fail("chunk size bucket %d out of order", i)
			return
		}
		if c == 0 {
			d.fail("chunk size bucket %d stored empty", i)
			return
		}
		r.ChunkSizes[i] = c
		next = i + 1
	}
}

func (r *RecorderStats) validate(cpus uint32) error {
	if uint64(len(r.VCPUs)) != uint64(cpus) {
		return fmt.Errorf("recorder stats for %d vcpus, recording has %d vcpus", len(r.VCPUs), cpus)
	}
	return nil
}

// decoder reads fields from one block's payload. Errors are sticky: after
// the first one every getter returns zero, and the caller checks d.err once
// per record, which keeps the per-kind decode functions straight-line.
type decoder struct {
	b   []byte // the block payload
	off int    // next byte to read
	err error  // first error, nil if none
	// alias is set for the validation pass, which decodes into reused
	// scratch records: byte strings then alias b instead of being copied, so
	// validating a block allocates nothing per record.
	alias bool
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// bounded reads a uvarint that must not exceed max.
func (d *decoder) bounded(max uint64, what string) uint64 {
	v := d.uvarint()
	if v > max {
		d.fail("%s %d exceeds %d", what, v, max)
		return 0
	}
	return v
}

func (d *decoder) u32() uint32 { return uint32(d.bounded(math.MaxUint32, "uint32 field")) }

func (d *decoder) u8() uint8 {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) hash() (h [32]byte) {
	if d.err != nil {
		return h
	}
	if d.remaining() < len(h) {
		d.fail("hash truncated")
		return h
	}
	d.off += copy(h[:], d.b[d.off:])
	return h
}

// count reads the number of items of size bytes each that follow, failing
// if the rest of the payload cannot hold them; callers allocate only after.
func (d *decoder) count(size int, what string) uint64 {
	v := d.uvarint()
	if left := d.remaining() / size; v > uint64(left) {
		d.fail("%s %d exceeds the %d that fit in the rest of the block", what, v, left)
		return 0
	}
	return v
}

// bytes reads a length-prefixed byte string; a copy unless d.alias.
func (d *decoder) bytes() []byte {
	n := d.count(1, "byte string length")
	if d.err != nil {
		return nil
	}
	s := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	if d.alias {
		return s
	}
	return append([]byte(nil), s...)
}

// decodeRecord decodes the record starting at d.off into a fresh record, or
// into scratch[kind] when d.alias is set (scratch must then have numKinds
// entries). The result is validated against cpus.
func decodeRecord(d *decoder, cpus uint32, scratch []codec) (codec, error) {
	start := d.off
	k := Kind(d.u8())
	if d.err != nil {
		return nil, d.err
	}
	if !k.Valid() {
		return nil, fmt.Errorf("%w %d at payload offset %d", ErrUnknownKind, uint8(k), start)
	}
	var rec codec
	if d.alias {
		if scratch[k] == nil {
			scratch[k] = newRecord(k)
		}
		rec = scratch[k]
	} else {
		rec = newRecord(k)
	}
	rec.decode(d)
	err := d.err
	if err == nil {
		err = rec.validate(cpus)
	}
	if err != nil {
		return nil, fmt.Errorf("%v record at payload offset %d: %w", k, start, err)
	}
	return rec, nil
}

// u64fixed reads a little-endian uint64 (hashes, where varints would not
// save space).
func (d *decoder) u64fixed() uint64 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 8 {
		d.fail("uint64 truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}
