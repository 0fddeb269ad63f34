package devices

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeImage creates a raw image of n pseudo-random bytes.
func writeImage(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, data, 0o444); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestOverlayCopyOnWrite(t *testing.T) {
	const size = 3*overlayBlockSize + 1000 // last block is partial
	path, data := writeImage(t, size)
	before := fileHash(t, path)
	o, err := NewOverlay(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Size() != size {
		t.Fatalf("size %d", o.Size())
	}
	model := bytes.Clone(data) // what the guest should see
	writes := []struct {
		off int64
		n   int
	}{
		{0, 512},                                          // inside block 0
		{overlayBlockSize - 100, 300},                     // straddles blocks 0 and 1
		{overlayBlockSize, overlayBlockSize},              // exactly block 1
		{2*overlayBlockSize + 10, overlayBlockSize + 500}, // into the partial last block
		{size - 1, 1},                                     // last byte
	}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(0xA0 + i)}, w.n)
		if n, err := o.WriteAt(p, w.off); err != nil || n != w.n {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		copy(model[w.off:], p)
	}
	reads := []struct {
		off int64
		n   int
	}{{0, size}, {1, 7000}, {overlayBlockSize - 1, 2}, {size - 600, 600}}
	for _, r := range reads {
		got := make([]byte, r.n)
		if n, err := o.ReadAt(got, r.off); err != nil || n != r.n {
			t.Fatalf("read at %d: %d, %v", r.off, n, err)
		}
		if !bytes.Equal(got, model[r.off:r.off+int64(r.n)]) {
			t.Errorf("read at %d+%d differs from the model", r.off, r.n)
		}
	}
	// Reads past the end follow io.ReaderAt.
	tail := make([]byte, 100)
	if n, err := o.ReadAt(tail, size-10); n != 10 || !errors.Is(err, io.EOF) {
		t.Errorf("read across the end: %d, %v", n, err)
	}
	if _, err := o.WriteAt([]byte{1, 2}, size-1); err == nil {
		t.Error("write across the end succeeded")
	}
	if o.DirtyBlocks() != 4 {
		t.Errorf("%d dirty blocks, want 4", o.DirtyBlocks())
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, path) != before {
		t.Fatal("the base image was modified")
	}
}

func TestOverlaySnapshotRestore(t *testing.T) {
	path, data := writeImage(t, 4*overlayBlockSize)
	o, err := NewOverlay(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.WriteAt([]byte("first"), 100)
	snap := o.Snapshot()
	o.WriteAt([]byte("SECOND"), 100)               // same block: must not alter snap
	o.WriteAt([]byte("other"), 3*overlayBlockSize) // new block
	if err := o.Restore(snap); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4*overlayBlockSize)
	o.ReadAt(got, 0)
	want := bytes.Clone(data)
	copy(want[100:], "first")
	if !bytes.Equal(got, want) {
		t.Error("restore did not return to the snapshot's contents")
	}
	for _, bad := range []OverlayState{
		{Blocks: map[int64][]byte{4: make([]byte, overlayBlockSize)}},
		{Blocks: map[int64][]byte{0: make([]byte, 10)}},
		{Blocks: map[int64][]byte{-1: make([]byte, overlayBlockSize)}},
	} {
		if err := o.Restore(bad); err == nil {
			t.Errorf("restore accepted %v", bad.Blocks)
		}
	}
}

func TestOverlayErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewOverlay(filepath.Join(dir, "missing.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty.img")
	os.WriteFile(empty, nil, 0o644)
	if _, err := NewOverlay(empty); !errors.Is(err, ErrEmptyImage) {
		t.Errorf("empty file: %v", err)
	}
	if _, err := NewOverlay(dir); err == nil {
		t.Error("a directory was accepted as an image")
	}
}
