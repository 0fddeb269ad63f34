package devices

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Overlay is a copy-on-write disk: the user's raw image, opened read-only
// and never written, under an in-memory map of the 4 KiB blocks the guest
// has written. A recording must not depend on (or damage) the image beyond
// what it read, and every run starts from the same image, so guest writes
// live only in memory and in checkpoints.
//
// Blocks in the map are immutable: a write replaces a block with a fresh
// copy. A snapshot therefore only copies the map, sharing the blocks.

// overlayBlockSize is the copy-on-write granularity: the guest's page size,
// which is also the size of most Linux block I/O.
const overlayBlockSize = 4096

// ErrEmptyImage is returned for a disk image with no whole 512-byte sector.
var ErrEmptyImage = errors.New("disk image is empty (less than one 512-byte sector)")

// errBeyondDisk is a write past the end of the fixed-size disk.
var errBeyondDisk = errors.New("write beyond the end of the disk")

// OverlayState is the guest-written blocks, gob-encodable. Block i covers
// bytes [i*4096, (i+1)*4096) of the disk; the last block of a disk whose
// size is not a multiple of 4096 is zero-padded.
type OverlayState struct {
	Blocks map[int64][]byte // block index → 4096 bytes of contents
}

// Overlay implements BlockBackend.
type Overlay struct {
	base   *os.File         // the user's image, opened O_RDONLY
	size   int64            // the image's size, which is the disk's size
	blocks map[int64][]byte // written blocks, each immutable once stored
}

// NewOverlay opens the raw image at path read-only.
func NewOverlay(path string) (*Overlay, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err) // wraps fs.ErrNotExist etc.
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat disk image %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("disk image %s is not a regular file", path)
	}
	if fi.Size() < virtioBlkSectorSize {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrEmptyImage)
	}
	return &Overlay{base: f, size: fi.Size(), blocks: map[int64][]byte{}}, nil
}

// Size returns the disk size in bytes (the image's size).
func (o *Overlay) Size() int64 { return o.size }

// Flush is a no-op: guest writes are deliberately never made durable.
func (o *Overlay) Flush() error { return nil }

// Close closes the base image.
func (o *Overlay) Close() error { return o.base.Close() }

// DirtyBlocks returns the number of 4 KiB blocks the guest has written.
func (o *Overlay) DirtyBlocks() int { return len(o.blocks) }

// ReadAt implements io.ReaderAt over the overlaid disk.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("overlay read at negative offset %d", off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > o.size-off {
		p = p[:o.size-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		bi, bo := pos/overlayBlockSize, pos%overlayBlockSize
		chunk := p[n:min(len(p), n+int(overlayBlockSize-bo))]
		if blk, ok := o.blocks[bi]; ok {
			copy(chunk, blk[bo:])
		} else if err := o.readBase(chunk, pos); err != nil {
			return n, err
		}
		n += len(chunk)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// readBase fills p from the base image at off; the caller keeps it within
// the image's size.
func (o *Overlay) readBase(p []byte, off int64) error {
	if _, err := o.base.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read disk image: %w", err)
	}
	return nil
}

// WriteAt implements io.WriterAt: the data goes to fresh copies of the
// touched blocks. The disk does not grow.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > o.size || int64(len(p)) > o.size-off {
		return 0, fmt.Errorf("%w: %d bytes at %d, disk has %d", errBeyondDisk, len(p), off, o.size)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		bi, bo := pos/overlayBlockSize, pos%overlayBlockSize
		m := min(len(p)-n, int(overlayBlockSize-bo))
		blk := make([]byte, overlayBlockSize)
		if old, ok := o.blocks[bi]; ok {
			copy(blk, old)
		} else if m < overlayBlockSize {
			// Partial write of a clean block: start from the image.
			start := bi * overlayBlockSize
			if err := o.readBase(blk[:min(overlayBlockSize, o.size-start)], start); err != nil {
				return n, err
			}
		}
		copy(blk[bo:], p[n:n+m])
		o.blocks[bi] = blk
		n += m
	}
	return n, nil
}

// Snapshot returns the written blocks. The map is copied; the blocks are
// shared, which is safe because they are never modified in place.
func (o *Overlay) Snapshot() OverlayState {
	m := make(map[int64][]byte, len(o.blocks))
	for k, v := range o.blocks {
		m[k] = v
	}
	return OverlayState{Blocks: m}
}

// Restore replaces the written blocks, checking them against the disk size
// since a snapshot is untrusted input.
func (o *Overlay) Restore(s OverlayState) error {
	nblocks := (o.size + overlayBlockSize - 1) / overlayBlockSize
	m := make(map[int64][]byte, len(s.Blocks))
	for k, v := range s.Blocks {
		if k < 0 || k >= nblocks || len(v) != overlayBlockSize {
			return fmt.Errorf("overlay snapshot: bad block %d (%d bytes) for a %d-byte disk", k, len(v), o.size)
		}
		m[k] = v
	}
	o.blocks = m
	return nil
}
