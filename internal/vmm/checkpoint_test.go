package vmm

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/samsara-vmm/samsara/internal/devices"
	"github.com/samsara-vmm/samsara/internal/snapshot"
	"github.com/samsara-vmm/samsara/internal/treehash"
)

// testCheckpointMem is guest memory with non-zero pages in runs of several
// lengths, including one longer than a digest piece, and a page that is
// zero but for its last byte.
func testCheckpointMem() []byte {
	mem := make([]byte, 8<<20)
	r := rand.New(rand.NewSource(1))
	for _, run := range []snapshot.Run{{First: 0, Count: 1}, {First: 2, Count: 3}, {First: 100, Count: 300}, {First: 1000, Count: 1}, {First: 2047, Count: 1}} {
		r.Read(mem[run.First*4096 : (run.First+run.Count)*4096])
	}
	mem[1500*4096+4095] = 1
	return mem
}

func testCheckpointMeta() *snapshot.Meta {
	return &snapshot.Meta{CPUs: 2, Mem: 8 << 20, Cmdline: "console=ttyS0", GuestNow: 12345,
		VCPUs: make([]snapshot.VCPU, 2), LAPICs: make([]devices.LAPICState, 2), Spins: []snapshot.Range{{Start: 1, End: 2}}}
}

// readTestCheckpoint reads path into fresh memory of the size in its meta.
func readTestCheckpoint(path string) (*snapshot.Meta, []byte, error) {
	var mem []byte
	meta, err := readCheckpoint(path, func(m *snapshot.Meta) ([]byte, error) {
		mem = make([]byte, m.Mem)
		return mem, nil
	})
	return meta, mem, err
}

func TestCheckpointFormatsRoundTrip(t *testing.T) {
	mem, want := testCheckpointMem(), testCheckpointMeta()
	runs, err := nonZeroRuns(mem, -1)
	if err != nil {
		t.Fatal(err)
	}
	if wantRuns := []snapshot.Run{{First: 0, Count: 1}, {First: 2, Count: 3}, {First: 100, Count: 300}, {First: 1000, Count: 1}, {First: 1500, Count: 1}, {First: 2047, Count: 1}}; !reflect.DeepEqual(runs, wantRuns) {
		t.Fatalf("runs %v, want %v", runs, wantRuns)
	}
	for _, v := range []uint32{1, 2, 3} {
		path := filepath.Join(t.TempDir(), "c.ckpt")
		if err := writeCheckpointFile(path, want, mem, -1, v); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		if got := binary.LittleEndian.Uint32(raw[16:]); got != v {
			t.Fatalf("wrote version %d, want %d", got, v)
		}
		meta, got, err := readTestCheckpoint(path)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if !bytes.Equal(got, mem) {
			t.Errorf("version %d: memory differs after the round trip", v)
		}
		if meta.CPUs != want.CPUs || meta.Cmdline != want.Cmdline || meta.GuestNow != want.GuestNow || len(meta.Spins) != 1 {
			t.Errorf("version %d: meta %+v, want %+v", v, meta, want)
		}
		if v >= 2 && len(raw)%4096 != 32 {
			t.Errorf("version %d file of %d bytes: pages not page-aligned", v, len(raw))
		}
	}
}

// randomize sets every settable field of the value v points to, at any
// depth, to pseudo-random values.
func randomize(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		randomize(r, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				randomize(r, f)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			randomize(r, v.Index(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for range 3 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			randomize(r, k)
			randomize(r, e)
			v.SetMapIndex(k, e)
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64())
	case reflect.Int, reflect.Int64:
		v.SetInt(r.Int63())
	}
}

// testVCPUSnapshot is a vCPU state with every field set (but the padding
// KVM ignores, which checkpoints do not keep).
func testVCPUSnapshot(seed int64) vcpuSnapshot {
	var s vcpuSnapshot
	randomize(rand.New(rand.NewSource(seed)), reflect.ValueOf(&s))
	s.FPU.Pad1, s.FPU.Pad2 = 0, 0
	s.State = stateHalted
	return s
}

// TestCheckpointStateConversion: every field of the vCPU state survives
// the conversion to internal/snapshot's structs and back, and the file.
func TestCheckpointStateConversion(t *testing.T) {
	s := testVCPUSnapshot(4)
	sv := toSnapshotVCPU(&s)
	back, err := fromSnapshotVCPU(&sv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("vCPU state differs after the conversion:\n got %+v\nwant %+v", back, s)
	}
	marks := KernelMarks{ReturnToUser: 7, PageFault: 9}
	spins := []KernelRange{{1, 2}, {3, 4}}
	if m := fromSnapshotMarks(toSnapshotMarks(marks)); m != marks {
		t.Errorf("marks %+v, want %+v", m, marks)
	}
	if r := fromSnapshotRanges(toSnapshotRanges(spins)); !reflect.DeepEqual(r, spins) {
		t.Errorf("spins %+v, want %+v", r, spins)
	}
	for _, v := range []uint32{1, 2, 3} {
		meta := testCheckpointMeta()
		meta.VCPUs[1] = sv
		path := filepath.Join(t.TempDir(), "c.ckpt")
		if err := writeCheckpointFile(path, meta, testCheckpointMem(), -1, v); err != nil {
			t.Fatal(err)
		}
		got, _, err := readTestCheckpoint(path)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if back, err := fromSnapshotVCPU(&got.VCPUs[1]); err != nil || !reflect.DeepEqual(back, s) {
			t.Errorf("version %d: vCPU state differs after the file (%v)", v, err)
		}
	}
}

// v2Meta is checkpointMeta as samsara wrote it in format version 2,
// gokvm's types included: TestCheckpointV2Loads writes a file the way
// that code did.
type v2Meta struct {
	CPUs     int
	Mem      uint64
	Cmdline  string
	HasDisk  bool
	GuestNow int64
	VCPUs    []vcpuSnapshot
	LAPICs   []devices.LAPICState
	IOAPIC   devices.IOAPICState
	PIT      devices.PITState
	UART     devices.UARTState
	RTC      devices.RTCState
	PIC      devices.PICState
	Virtio   *devices.VirtioState
	Overlay  *devices.OverlayState
	Marks    KernelMarks
	Spins    []KernelRange
}

// writeV2AsBefore writes meta and mem as format version 2's writer did.
func writeV2AsBefore(t *testing.T, path string, meta *v2Meta, mem []byte) {
	var mb bytes.Buffer
	if err := gob.NewEncoder(&mb).Encode(meta); err != nil {
		t.Fatal(err)
	}
	runs, err := nonZeroRuns(mem, -1)
	if err != nil {
		t.Fatal(err)
	}
	var nPages uint64
	for _, r := range runs {
		nPages += r.Count
	}
	metaLen, nRuns := uint64(mb.Len()), uint64(len(runs))
	dataOff := (64 + metaLen + 16*nRuns + 4095) &^ 4095
	out := make([]byte, dataOff)
	copy(out, "SAMSARA-CKPT")
	le := binary.LittleEndian
	le.PutUint32(out[16:], 2)
	le.PutUint64(out[24:], metaLen)
	le.PutUint64(out[32:], nRuns)
	le.PutUint64(out[40:], nPages)
	le.PutUint64(out[48:], dataOff)
	copy(out[64:], mb.Bytes())
	for i, r := range runs {
		le.PutUint64(out[64+metaLen+16*uint64(i):], r.First)
		le.PutUint64(out[64+metaLen+16*uint64(i)+8:], r.Count)
	}
	for _, r := range runs {
		out = append(out, mem[r.First*4096:(r.First+r.Count)*4096]...)
	}
	d := treehash.Bytes(out)
	if err := os.WriteFile(path, append(out, d[:]...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointV2Loads: a version 2 file, written the way samsara wrote
// them (a gob of gokvm's structs), still loads, every field intact; and
// converts to the current version.
func TestCheckpointV2Loads(t *testing.T) {
	dir := t.TempDir()
	mem := testCheckpointMem()
	old := &v2Meta{CPUs: 2, Mem: uint64(len(mem)), Cmdline: "console=ttyS0", GuestNow: 777,
		VCPUs: []vcpuSnapshot{testVCPUSnapshot(5), testVCPUSnapshot(6)}, LAPICs: make([]devices.LAPICState, 2),
		Marks: KernelMarks{ReturnToUser: 0x1000, PageFault: 0x2000}, Spins: []KernelRange{{5, 6}},
		Overlay: &devices.OverlayState{Blocks: map[int64][]byte{3: bytes.Repeat([]byte{1}, 4096)}}}
	old.VCPUs[0].Xsave = nil // a vCPU saved without XSAVE falls back to the FPU
	old.VCPUs[0].State = stateWaitSIPI
	old.LAPICs[1].TPR = 0x20
	old.PIT.Channels[0].Count = 1193
	old.UART.Input = []byte("x")
	path := filepath.Join(dir, "v2.ckpt")
	writeV2AsBefore(t, path, old, mem)
	check := func(path string) {
		t.Helper()
		meta, got, err := readTestCheckpoint(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, mem) {
			t.Error("memory differs")
		}
		for i := range old.VCPUs {
			if s, err := fromSnapshotVCPU(&meta.VCPUs[i]); err != nil || !reflect.DeepEqual(s, old.VCPUs[i]) {
				t.Errorf("vCPU %d differs (%v):\n got %+v\nwant %+v", i, err, s, old.VCPUs[i])
			}
		}
		if fromSnapshotMarks(meta.Marks) != old.Marks || !reflect.DeepEqual(fromSnapshotRanges(meta.Spins), old.Spins) ||
			meta.GuestNow != old.GuestNow || meta.LAPICs[1].TPR != 0x20 || meta.PIT.Channels[0].Count != 1193 ||
			string(meta.UART.Input) != "x" || len(meta.Overlay.Blocks[3]) != 4096 {
			t.Errorf("meta differs: %+v", meta)
		}
	}
	check(path)
	// Rewritten in the current version (as ConvertCheckpoint does, which
	// wants a bootable memory size), it reads back the same.
	meta, got, err := readTestCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	v3 := filepath.Join(dir, "v3.ckpt")
	if err := writeCheckpointFile(v3, meta, got, -1, checkpointVersion); err != nil {
		t.Fatal(err)
	}
	check(v3)
}

// TestCheckpointRejectsDamage: each kind of damage to a version 2 or 3
// file is an ErrBadCheckpoint of the kind that says what is wrong.
func TestCheckpointRejectsDamage(t *testing.T) {
	for _, version := range []uint32{2, 3} {
		dir := t.TempDir()
		path := filepath.Join(dir, "c.ckpt")
		if err := writeCheckpointFile(path, testCheckpointMeta(), testCheckpointMem(), -1, version); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		metaLen, nRuns, dataOff := le.Uint64(raw[24:]), le.Uint64(raw[32:]), le.Uint64(raw[48:])
		flip := func(off uint64) []byte {
			b := bytes.Clone(raw)
			b[off] ^= 0x40
			return b
		}
		setU64 := func(off, v uint64) []byte {
			b := bytes.Clone(raw)
			le.PutUint64(b[off:], v)
			return b
		}
		cases := []struct {
			name string
			b    []byte
			kind error // nil: any kind
		}{
			{"magic", flip(3), snapshot.ErrBadMagic},
			{"version", setU64(16, 99), snapshot.ErrVersion},
			{"flags", flip(21), snapshot.ErrMalformed},
			{"meta length", setU64(24, metaLen+1), nil},
			{"huge meta length", setU64(24, 1<<62), snapshot.ErrTooLarge},
			{"meta length over the limit", setU64(24, snapshot.MaxMetaBytes+1), snapshot.ErrTooLarge},
			{"huge page count", setU64(40, 1<<62), snapshot.ErrTooLarge},
			{"meta byte", flip(64 + metaLen/2), nil},
			{"meta last byte", flip(64 + metaLen - 1), nil},
			{"run table", flip(64 + metaLen + 16*(nRuns-1)), nil},
			{"padding", flip(dataOff - 1), snapshot.ErrDigest},
			{"first page", flip(dataOff), snapshot.ErrDigest},
			{"page in a long run", flip(dataOff + 200*4096 + 17), snapshot.ErrDigest},
			{"last page", flip(uint64(len(raw)) - 33), snapshot.ErrDigest},
			{"digest", flip(uint64(len(raw)) - 1), snapshot.ErrDigest},
			{"truncated", raw[:len(raw)-1], snapshot.ErrTruncated},
			{"truncated to pages", raw[:dataOff+4096], snapshot.ErrTruncated},
			{"truncated header", raw[:40], snapshot.ErrTruncated},
			{"truncated magic", raw[:5], snapshot.ErrTruncated},
			{"extended", append(bytes.Clone(raw), 0), snapshot.ErrMalformed},
			{"empty", nil, snapshot.ErrTruncated},
		}
		for _, c := range cases {
			p := filepath.Join(dir, "bad.ckpt")
			if err := os.WriteFile(p, c.b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := readTestCheckpoint(p)
			if !errors.Is(err, ErrBadCheckpoint) || (c.kind != nil && !errors.Is(err, c.kind)) {
				t.Errorf("version %d, %s: got %v, want ErrBadCheckpoint of kind %v", version, c.name, err, c.kind)
			}
		}
		// The undamaged file still reads.
		if _, _, err := readTestCheckpoint(path); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckpointV1RejectsDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.ckpt")
	if err := writeCheckpointFile(path, testCheckpointMeta(), testCheckpointMem(), -1, 1); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	for name, b := range map[string][]byte{
		"body":      append(append(bytes.Clone(raw[:100]), raw[100]^1), raw[101:]...),
		"truncated": raw[:len(raw)-1],
	} {
		p := filepath.Join(dir, "bad.ckpt")
		os.WriteFile(p, b, 0o644)
		if _, _, err := readTestCheckpoint(p); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("%s: got %v, want ErrBadCheckpoint", name, err)
		}
	}
}

func TestCheckpointConvert(t *testing.T) {
	dir := t.TempDir()
	mem := make([]byte, 32<<20)
	copy(mem[5<<20:], "guest data")
	meta := testCheckpointMeta()
	meta.Mem = uint64(len(mem))
	cur, v1, v2, back := filepath.Join(dir, "cur"), filepath.Join(dir, "v1"), filepath.Join(dir, "v2"), filepath.Join(dir, "back")
	if err := writeCheckpointFile(cur, meta, mem, -1, checkpointVersion); err != nil {
		t.Fatal(err)
	}
	if err := ConvertCheckpoint(cur, v1, 1); err != nil {
		t.Fatal(err)
	}
	if err := ConvertCheckpoint(v1, v2, 2); err != nil {
		t.Fatal(err)
	}
	if err := ConvertCheckpoint(v2, back, checkpointVersion); err != nil {
		t.Fatal(err)
	}
	_, got, err := readTestCheckpoint(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Error("memory differs after v3 -> v1 -> v2 -> v3")
	}
	a, _ := os.ReadFile(cur)
	b, _ := os.ReadFile(back)
	if !bytes.Equal(a, b) {
		t.Error("the file differs after v3 -> v1 -> v2 -> v3")
	}
}

func TestTreeHashSplitting(t *testing.T) {
	// Streaming in odd pieces gives the one-shot result.
	b := make([]byte, 3<<20+77)
	rand.New(rand.NewSource(2)).Read(b)
	one := treehash.New()
	one.Write(b)
	many := treehash.New()
	for rest, k := b, 1; len(rest) > 0; k = (k*3 + 1) % 1000003 {
		n := min(k%100000, len(rest))
		many.Write(rest[:n])
		rest = rest[n:]
	}
	if one.Sum() != many.Sum() {
		t.Error("tree digest depends on how the input is split")
	}
}

// BenchmarkCheckpointRead reads a checkpoint of 8 MiB of random pages in
// each format (go test -bench CheckpointRead; run the test binary under
// qemu-x86_64 -cpu max to approximate the emulated SVM host).
func BenchmarkCheckpointRead(b *testing.B) {
	mem := make([]byte, 64<<20)
	rand.New(rand.NewSource(3)).Read(mem[:32<<20])
	meta := testCheckpointMeta()
	meta.Mem = uint64(len(mem))
	for _, v := range []uint32{1, 2, 3} {
		path := filepath.Join(b.TempDir(), "c.ckpt")
		if err := writeCheckpointFile(path, meta, mem, -1, v); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			b.SetBytes(32 << 20)
			for range b.N {
				if _, err := readCheckpoint(path, func(*snapshot.Meta) ([]byte, error) { return mem, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
