package log

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"
)

// testCPUs is the vCPU count of testHeader; records use vCPUs below it.
const testCPUs = 4

func testHeader() *Header {
	return &Header{
		Config: VMConfig{
			CPUs:        testCPUs,
			MemoryBytes: 512 << 20,
			Cmdline:     "console=ttyS0 quiet",
			Argv:        []string{"/bin/sh", "-c", "echo hi"},
		},
		Hashes: Hashes{
			Kernel:  HashBytes([]byte("kernel")),
			Initrd:  HashBytes([]byte("initrd")),
			Cmdline: HashBytes([]byte("console=ttyS0 quiet")),
		},
		Platform:       PlatformPVM,
		Counter:        "pvm-branches",
		Mode:           ModeParallel,
		Tracker:        "pagemap",
		SamsaraVersion: "test",
		Created:        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func hash(b byte) (h [32]byte) {
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

// maxPoint and kernelPoint are edge values for Point's encoding.
var (
	maxPoint    = Point{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}
	kernelPoint = Point{UserBranches: 123456789, KernelInsns: 42, RIP: 0xffffffff81000123, RCX: 0xffffffffffffffff, Regs: 0x0123456789abcdef}
)

// allKinds has one or more records of every kind, with edge values. Empty
// byte strings are nil because that is what the reader returns for them.
func allKinds() []Record {
	return []Record{
		&Chunk{VCPU: 0, End: Point{}, Reason: ReasonIO},
		&Chunk{VCPU: testCPUs - 1, End: maxPoint, Reason: ReasonConflict, Squashes: math.MaxUint32, Exits: math.MaxUint32, GuestMicros: math.MaxUint32},
		&Chunk{VCPU: 2, End: kernelPoint, Reason: ReasonBudget, Squashes: 3, Exits: 17, GuestMicros: 1234},
		&PIORead{VCPU: 1, Port: 0x3f8, Size: 1, Value: 0x41},
		&PIORead{VCPU: 3, Port: math.MaxUint16, Size: 255, Value: math.MaxUint64},
		&MMIORead{VCPU: 0, Addr: 0xfee00030, Size: 4, Value: 0x50014},
		&MMIORead{VCPU: 2, Addr: math.MaxUint64, Size: 8, Value: math.MaxUint64},
		&Interrupt{VCPU: 1, Vector: 0xec, At: kernelPoint},
		&Interrupt{VCPU: 0, Vector: 255, At: maxPoint},
		&DiskCompletion{Seq: 0, VCPU: 3, At: Point{RIP: 0x401000}},
		&DiskCompletion{Seq: math.MaxUint64, VCPU: 0, At: maxPoint},
		&ConsoleInput{Data: []byte("ls -l\n")},
		&ConsoleInput{Data: nil},
		&ConsoleInput{Data: bytes.Repeat([]byte{0, 0xff}, 3000)},
		&Time{VCPU: 2, Nanos: 1_700_000_000_123_456_789},
		&Time{VCPU: 0, Nanos: math.MinInt64},
		&Time{VCPU: 1, Nanos: -1},
		&Digest{Seq: 7, VCPUs: [][32]byte{hash(1), hash(2), hash(3), hash(4)}, Memory: hash(9)},
		&End{ExitCode: 0, Reason: "poweroff", GuestNanos: 12345678901},
		&End{ExitCode: math.MinInt32, Reason: ""},
		&End{ExitCode: math.MaxInt32, Reason: strings.Repeat("ü", 100), GuestNanos: math.MaxUint64},
		&StateStop{VCPU: 1, Arch: []byte{1, 2, 3}, CodePage: 0x401, ExitRegs: 0xcbf29ce484222325, Pages: []uint64{0x100, 0x101, 0x3ffff}, Data: bytes.Repeat([]byte{0xab, 0, 0, 7}, 3*PageSize/4)},
		&StateStop{VCPU: testCPUs - 1, Arch: bytes.Repeat([]byte{9}, 5000), Pages: []uint64{}},
		testRecorderStats(),
		&RecorderStats{VCPUs: make([]RecorderVCPUStats, testCPUs)}, // empty histogram, no tracker
		&RecorderStats{Tracker: strings.Repeat("t", 300), VCPUs: []RecorderVCPUStats{
			{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}, {}, {}, {},
		}, ChunkSizes: fullHistogram()},
	}
}

// testRecorderStats is a plausible parallel recorder summary.
func testRecorderStats() *RecorderStats {
	rs := &RecorderStats{
		Tracker: "private-pagemap",
		VCPUs: []RecorderVCPUStats{
			{Commits: 900, Squashes: 100, ExclusiveRuns: 2, CommittedWork: 1_000_000, ReexecutedWork: 50_000},
			{Commits: 1000, Squashes: 0, ExclusiveRuns: 0, CommittedWork: 2_000_000, ReexecutedWork: 0},
			{Commits: 0, Squashes: 0, ExclusiveRuns: 0, CommittedWork: 0, ReexecutedWork: 0},
			{Commits: 3, Squashes: 1, ExclusiveRuns: 1, CommittedWork: 30, ReexecutedWork: 10},
		},
	}
	rs.ChunkSizes[SizeBucket(1)] = 3       // [1, 1]
	rs.ChunkSizes[SizeBucket(1000)] = 1000 // [512, 1023]
	rs.ChunkSizes[SizeBucket(3000)] = 900  // [2048, 4095]
	return rs
}

// fullHistogram has every bucket non-empty, bucket 64 at the maximum count.
func fullHistogram() (h SizeHistogram) {
	for i := range h {
		h[i] = uint64(i) + 1
	}
	h[NumSizeBuckets-1] = math.MaxUint64
	return h
}

// encodeLog writes recs to a complete in-memory recording.
func encodeLog(t testing.TB, recs []Record, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Append(r); err != nil {
			t.Fatalf("append %#v: %v", r, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blockSpan is where one frame sits in an encoded recording.
type blockSpan struct {
	start, end int    // [start, end) in the file, frame header included
	count      uint32 // records declared (0 for the end marker)
}

// spans walks the frames of a well-formed recording.
func spans(t testing.TB, b []byte) []blockSpan {
	t.Helper()
	var out []blockSpan
	for off := preambleSize; off < len(b); {
		f := parseFrame(b[off:])
		end := off + frameHeaderSize + int(f.clen)
		out = append(out, blockSpan{start: off, end: end, count: f.count})
		off = end
	}
	if last := out[len(out)-1]; last.count != 0 || last.end != len(b) {
		t.Fatalf("recording does not end with the end marker: %+v", last)
	}
	return out
}

// craftBlock is a record block built by hand for the corruption tests.
type craftBlock struct {
	payload []byte // uncompressed payload
	count   uint32 // declared record count
}

// craft builds a recording with testHeader and hand-made record blocks,
// framed and checksummed correctly, so that only the payload is wrong.
func craft(t testing.TB, blocks ...craftBlock) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := w.flushBlock(b.payload, b.count); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rec encodes records into a raw payload for craft.
func rec(rs ...Record) []byte {
	var b []byte
	for _, r := range rs {
		c := r.(codec)
		b = append(b, byte(c.Kind()))
		b = c.appendFields(b)
	}
	return b
}

// patchFrame rewrites the frame header at off with f, keeping the payload.
func patchFrame(b []byte, off int, f frame) []byte {
	out := bytes.Clone(b)
	binary.LittleEndian.PutUint32(out[off:], f.clen)
	binary.LittleEndian.PutUint32(out[off+4:], f.ulen)
	binary.LittleEndian.PutUint32(out[off+8:], f.crc)
	binary.LittleEndian.PutUint32(out[off+12:], f.count)
	return out
}
