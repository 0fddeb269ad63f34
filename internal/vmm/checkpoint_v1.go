package vmm

// Checkpoint format version 1 (layout in checkpoint.go): zstd-compressed
// gob metadata and pages, SHA-256 over the file.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// endOfPages terminates the page list.
const endOfPages = ^uint64(0)

// writeCheckpointV1 writes a version 1 file to w.
func writeCheckpointV1(w io.Writer, meta *checkpointMeta, mem []byte, runs []pageRun) error {
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var hdr [20]byte
	copy(hdr[:], checkpointMagic[:])
	binary.LittleEndian.PutUint32(hdr[16:], 1)
	if _, err := mw.Write(hdr[:]); err != nil {
		return err
	}
	zw, err := zstd.NewWriter(mw, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	if err := gob.NewEncoder(bw).Encode(meta); err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	var pn [8]byte
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			binary.LittleEndian.PutUint64(pn[:], p)
			bw.Write(pn[:])
			bw.Write(mem[p*4096 : (p+1)*4096])
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

// readCheckpointV1 reads the version 1 file f of the given size.
func readCheckpointV1(path string, f *os.File, size int64, alloc func(*checkpointMeta) ([]byte, error)) (*checkpointMeta, error) {
	raw := make([]byte, size)
	if _, err := f.ReadAt(raw, 0); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	body, digest := raw[:len(raw)-32], raw[len(raw)-32:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], digest) {
		return nil, fmt.Errorf("%s: %w: SHA-256 mismatch (truncated or corrupted)", path, ErrBadCheckpoint)
	}
	zr, err := zstd.NewReader(bytes.NewReader(body[20:]))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadCheckpoint, err)
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 1<<20)
	var meta checkpointMeta
	if err := gob.NewDecoder(br).Decode(&meta); err != nil {
		return nil, fmt.Errorf("%s: %w: metadata: %v", path, ErrBadCheckpoint, err)
	}
	mem, err := alloc(&meta)
	if err != nil {
		return nil, err
	}
	var pn [8]byte
	for {
		if _, err := io.ReadFull(br, pn[:]); err != nil {
			return nil, fmt.Errorf("%s: %w: memory: %v", path, ErrBadCheckpoint, err)
		}
		p := binary.LittleEndian.Uint64(pn[:])
		if p == endOfPages {
			break
		}
		if p >= uint64(len(mem))/4096 {
			return nil, fmt.Errorf("%s: %w: page %d beyond guest memory", path, ErrBadCheckpoint, p)
		}
		if _, err := io.ReadFull(br, mem[p*4096:(p+1)*4096]); err != nil {
			return nil, fmt.Errorf("%s: %w: memory: %v", path, ErrBadCheckpoint, err)
		}
	}
	return &meta, nil
}
