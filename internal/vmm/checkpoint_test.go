package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/samsara-vmm/samsara/internal/devices"
	"github.com/samsara-vmm/samsara/internal/treehash"
)

// testCheckpointMem is guest memory with non-zero pages in runs of several
// lengths, including one longer than a digest piece, and a page that is
// zero but for its last byte.
func testCheckpointMem() []byte {
	mem := make([]byte, 8<<20)
	r := rand.New(rand.NewSource(1))
	for _, run := range []pageRun{{0, 1}, {2, 3}, {100, 300}, {1000, 1}, {2047, 1}} {
		r.Read(mem[run.First*4096 : (run.First+run.Count)*4096])
	}
	mem[1500*4096+4095] = 1
	return mem
}

func testCheckpointMeta() *checkpointMeta {
	return &checkpointMeta{CPUs: 2, Mem: 8 << 20, Cmdline: "console=ttyS0", GuestNow: 12345,
		VCPUs: make([]vcpuSnapshot, 2), LAPICs: make([]devices.LAPICState, 2), Spins: []KernelRange{{Start: 1, End: 2}}}
}

// readTestCheckpoint reads path into fresh memory of the size in its meta.
func readTestCheckpoint(path string) (*checkpointMeta, []byte, error) {
	var mem []byte
	meta, err := readCheckpoint(path, func(m *checkpointMeta) ([]byte, error) {
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
	if wantRuns := []pageRun{{0, 1}, {2, 3}, {100, 300}, {1000, 1}, {1500, 1}, {2047, 1}}; len(runs) != len(wantRuns) {
		t.Fatalf("runs %v, want %v", runs, wantRuns)
	}
	for _, v := range []uint32{1, 2} {
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
		if v == 2 && len(raw)%4096 != 32 {
			t.Errorf("version 2 file of %d bytes: pages not page-aligned", len(raw))
		}
	}
}

func TestCheckpointV2RejectsDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.ckpt")
	if err := writeCheckpointFile(path, testCheckpointMeta(), testCheckpointMem(), -1, 2); err != nil {
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
	cases := map[string][]byte{
		"magic":              flip(3),
		"version":            setU64(16, 3),
		"flags":              flip(21),
		"meta length":        setU64(24, metaLen+1),
		"huge meta length":   setU64(24, 1<<62),
		"huge page count":    setU64(40, 1<<62),
		"meta byte":          flip(ckptV2HeaderSize + metaLen/2),
		"meta last byte":     flip(ckptV2HeaderSize + metaLen - 1),
		"run table":          flip(ckptV2HeaderSize + metaLen + 16*(nRuns-1)),
		"padding":            flip(dataOff - 1),
		"first page":         flip(dataOff),
		"page in a long run": flip(dataOff + 200*4096 + 17),
		"last page":          flip(uint64(len(raw)) - 33),
		"digest":             flip(uint64(len(raw)) - 1),
		"truncated":          raw[:len(raw)-1],
		"truncated to pages": raw[:dataOff+4096],
		"truncated header":   raw[:40],
		"extended":           append(bytes.Clone(raw), 0),
		"empty":              nil,
	}
	for name, b := range cases {
		p := filepath.Join(dir, "bad.ckpt")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readTestCheckpoint(p); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("%s: got %v, want ErrBadCheckpoint", name, err)
		}
	}
	// The undamaged file still reads.
	if _, _, err := readTestCheckpoint(path); err != nil {
		t.Fatal(err)
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
	v2, v1, back := filepath.Join(dir, "v2"), filepath.Join(dir, "v1"), filepath.Join(dir, "back")
	if err := writeCheckpointFile(v2, meta, mem, -1, checkpointVersion); err != nil {
		t.Fatal(err)
	}
	if err := ConvertCheckpoint(v2, v1, 1); err != nil {
		t.Fatal(err)
	}
	if err := ConvertCheckpoint(v1, back, 2); err != nil {
		t.Fatal(err)
	}
	_, got, err := readTestCheckpoint(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Error("memory differs after v2 -> v1 -> v2")
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
	for _, v := range []uint32{1, 2} {
		path := filepath.Join(b.TempDir(), "c.ckpt")
		if err := writeCheckpointFile(path, meta, mem, -1, v); err != nil {
			b.Fatal(err)
		}
		b.Run(map[uint32]string{1: "v1", 2: "v2"}[v], func(b *testing.B) {
			b.SetBytes(32 << 20)
			for range b.N {
				if _, err := readCheckpoint(path, func(*checkpointMeta) ([]byte, error) { return mem, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
