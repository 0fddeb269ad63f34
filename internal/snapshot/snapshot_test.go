package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand"
	"reflect"
	"testing"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// testMem is 1 MiB of guest memory with a few non-zero pages, and runs
// naming them.
func testMem() ([]byte, []Run) {
	mem := make([]byte, 1<<20)
	runs := []Run{{First: 0, Count: 1}, {First: 3, Count: 2}, {First: 255, Count: 1}}
	r := rand.New(rand.NewSource(1))
	for _, run := range runs {
		r.Read(mem[run.First*pageSize : (run.First+run.Count)*pageSize])
	}
	return mem, runs
}

// testMeta is a small machine with a little of every kind of state.
func testMeta(mem []byte) *Meta {
	xs := make([]byte, XsaveSize)
	xs[0], xs[XsaveSize-1] = 0x7f, 0x80
	return &Meta{
		CPUs: 2, Mem: uint64(len(mem)), Cmdline: "console=ttyS0", HasDisk: true, GuestNow: 123456789,
		VCPUs: []VCPU{
			{Regs: Regs{RIP: 0xffffffff81000000, RSP: 1, RFLAGS: 2}, Sregs: Sregs{CS: Segment{Selector: 0x10, L: 1, Present: 1}, CR3: 0x1000, InterruptBitmap: [4]uint64{0, 1 << 3}},
				FPU: FPU{FCW: 0x37f, MXCSR: 0x1f80}, Xsave: xs, MSRs: map[uint32]uint64{0xC0000082: 0xffffffff81800000, 0x277: 7},
				Events: Events{Exception: Exception{Pending: 1, Nr: 14}, SMI: SMI{Pending: 1}, ExceptionPayload: 0xdead}, State: Running},
			{State: WaitSIPI},
		},
		LAPICs:  []devices.LAPICState{{TPR: 0x20}, {WaitSIPI: true}},
		IOAPIC:  devices.IOAPICState{ID: 1},
		PIT:     devices.PITState{PortB: 1},
		UART:    devices.UARTState{Input: []byte("ab")},
		RTC:     devices.RTCState{A: 0x26},
		Virtio:  &devices.VirtioState{Status: 15, Queues: []devices.VirtioQueueState{{Num: 128, Ready: true}}},
		Overlay: &devices.OverlayState{Blocks: map[int64][]byte{9: bytes.Repeat([]byte{3}, 4096)}},
		Marks:   Marks{ReturnToUser: 0x100, PageFault: 0x200},
		Spins:   []Range{{Start: 1, End: 2}},
	}
}

// encode writes meta and mem in the given version.
func encode(t testing.TB, meta *Meta, mem []byte, runs []Run, version uint32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, meta, mem, runs, version); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// read reads a file from memory, allocating guest memory of at most
// 64 MiB.
func read(b []byte) (*Meta, []byte, error) {
	var mem []byte
	meta, err := Read(bytes.NewReader(b), int64(len(b)), func(m *Meta) ([]byte, error) {
		if m.Mem > 64<<20 {
			return nil, errors.New("too much memory for a test")
		}
		mem = make([]byte, m.Mem)
		return mem, nil
	})
	return meta, mem, err
}

func TestRoundTrip(t *testing.T) {
	mem, runs := testMem()
	want := testMeta(mem)
	for _, v := range []uint32{1, 2, Version} {
		b := encode(t, want, mem, runs, v)
		meta, got, err := read(b)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if !bytes.Equal(got, mem) {
			t.Errorf("version %d: memory differs", v)
		}
		if !reflect.DeepEqual(meta, want) {
			t.Errorf("version %d: meta differs:\n got %+v\nwant %+v", v, meta, want)
		}
		// Version 3 is deterministic: the same state gives the same file
		// (gob, of versions 1 and 2, writes maps in random order).
		if again := encode(t, meta, got, runs, v); v == Version && !bytes.Equal(again, b) {
			t.Errorf("version %d: writing what was read gives a different file", v)
		}
	}
}

func TestRejects(t *testing.T) {
	mem, runs := testMem()
	good := encode(t, testMeta(mem), mem, runs, Version)
	le := binary.LittleEndian
	metaLen := le.Uint64(good[24:])
	with := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	withMeta := func(m *Meta) []byte { return encode(t, m, mem, runs, Version) }
	badState := testMeta(mem)
	badState.VCPUs[1].State = 9
	tooFew := testMeta(mem)
	tooFew.LAPICs = tooFew.LAPICs[:1]
	hugeMem := testMeta(mem)
	hugeMem.Mem = MaxMemBytes + pageSize
	smallMem := testMeta(mem)
	smallMem.Mem = 4 * pageSize // the runs go beyond it
	for _, c := range []struct {
		name string
		b    []byte
		kind error
	}{
		{"empty", nil, ErrTruncated},
		{"magic", with(func(b []byte) { b[0] = 'X' }), ErrBadMagic},
		{"text file", []byte("hello, world\n"), ErrBadMagic},
		{"version 0", with(func(b []byte) { le.PutUint32(b[16:], 0) }), ErrVersion},
		{"version 4", with(func(b []byte) { le.PutUint32(b[16:], 4) }), ErrVersion},
		{"truncated magic", good[:10], ErrTruncated},
		{"truncated header", good[:40], ErrTruncated},
		{"truncated pages", good[:len(good)-4096], ErrTruncated},
		{"truncated digest", good[:len(good)-1], ErrTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"oversize metadata", with(func(b []byte) { le.PutUint64(b[24:], MaxMetaBytes+1) }), ErrTooLarge},
		{"huge metadata", with(func(b []byte) { le.PutUint64(b[24:], 1<<63) }), ErrTooLarge},
		{"huge page count", with(func(b []byte) { le.PutUint64(b[40:], 1<<40) }), ErrTooLarge},
		{"metadata length off by one", with(func(b []byte) { le.PutUint64(b[24:], metaLen+1) }), ErrMalformed},
		{"flags", with(func(b []byte) { b[20] = 1 }), ErrMalformed},
		{"metadata byte", with(func(b []byte) { b[headerSize+1] = '[' }), ErrMalformed},
		{"page byte", with(func(b []byte) { b[len(b)-digestSize-1] ^= 1 }), ErrDigest},
		{"digest byte", with(func(b []byte) { b[len(b)-1] ^= 1 }), ErrDigest},
		{"run state", withMeta(badState), ErrMalformed},
		{"LAPIC count", withMeta(tooFew), ErrMalformed},
		{"huge guest memory", withMeta(hugeMem), ErrTooLarge},
		{"pages beyond guest memory", withMeta(smallMem), ErrMalformed},
	} {
		_, _, err := read(c.b)
		var e *Error
		if !errors.Is(err, ErrBad) || !errors.Is(err, c.kind) || !errors.As(err, &e) {
			t.Errorf("%s: got %v, want an *Error of kind %v", c.name, err, c.kind)
		}
	}
}

func TestErrorNamesThePath(t *testing.T) {
	e := &Error{Path: "/tmp/x.ckpt", Kind: ErrTruncated, Detail: "10 bytes"}
	if got, want := e.Error(), "/tmp/x.ckpt: truncated checkpoint: 10 bytes"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// BenchmarkReadMeta decodes the metadata of a 2-vCPU machine in each
// version (the part of a resume that is not reading pages).
func BenchmarkReadMeta(b *testing.B) {
	mem, _ := testMem()
	meta := testMeta(mem)
	meta.Overlay = nil
	for _, v := range []struct {
		name   string
		encode func(*Meta) ([]byte, error)
		decode func([]byte) (*Meta, error)
	}{
		{"gob-v2", encodeGob, decodeGob},
		{"json-v3", func(m *Meta) ([]byte, error) { return json.Marshal(m) }, decodeJSON},
	} {
		enc, err := v.encode(meta)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for range b.N {
				if _, err := v.decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestVCPURecordLayout pins the binary layout of a VCPU record (vcpu.go):
// reordering or retyping a field of the x86 structs changes it, which
// needs a Version bump.
func TestVCPURecordLayout(t *testing.T) {
	// Regs 18x8, Sregs 8 segments x 23 + 2 descriptors x 10 + 7x8 + 4x8,
	// FPU 411, Events 37, State 4.
	if want := 144 + 292 + 411 + 37 + 4; vcpuFixedSize != want {
		t.Fatalf("fixed part of a vCPU record is %d bytes, was %d: a format change", vcpuFixedSize, want)
	}
	v := VCPU{Regs: Regs{RAX: 1, RFLAGS: 2}, Sregs: Sregs{CS: Segment{Base: 3, Unusable: 4}, InterruptBitmap: [4]uint64{3: 5}},
		FPU: FPU{FPR: [8][16]uint8{{6}}, MXCSR: 7}, Events: Events{Exception: Exception{ErrorCode: 8}, ExceptionPayload: 9},
		State: Halted, MSRs: map[uint32]uint64{0x10: 11, 2: 12}}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var rec []byte
	if err := json.Unmarshal(j, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec) != 920 {
		t.Fatalf("record of %d bytes, want 920", len(rec))
	}
	le := binary.LittleEndian
	for _, c := range []struct {
		off  int
		want uint64
		size int
	}{
		{0, 1, 8}, {136, 2, 8}, // RAX, RFLAGS
		{144, 3, 8}, {144 + 22, 4, 1}, // CS.Base, CS.Unusable
		{428, 5, 8},              // Sregs.InterruptBitmap[3]
		{436, 6, 1}, {843, 7, 4}, // FPU.FPR[0][0], FPU.MXCSR
		{851, 8, 4}, {876, 9, 8}, // Events.Exception.ErrorCode, Events.ExceptionPayload
		{884, uint64(Halted), 4},                                             // State
		{888, 2, 4}, {892, 2, 4}, {896, 12, 8}, {904, 0x10, 4}, {908, 11, 8}, // MSRs, ascending
		{916, 0, 4}, // no XSAVE area
	} {
		got := uint64(rec[c.off])
		switch c.size {
		case 4:
			got = uint64(le.Uint32(rec[c.off:]))
		case 8:
			got = le.Uint64(rec[c.off:])
		}
		if got != c.want {
			t.Errorf("record offset %d: %d, want %d", c.off, got, c.want)
		}
	}
}
