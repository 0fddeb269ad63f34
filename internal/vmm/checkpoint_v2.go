package vmm

// Checkpoint format version 2 (layout in checkpoint.go): gob metadata and
// a run table, then the guest pages uncompressed and page-aligned, read
// straight into guest memory, and the tree digest (checkpoint_hash.go).

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"github.com/samsara-vmm/samsara/internal/treehash"
	"io"
	"os"
)

const (
	// ckptV2HeaderSize is the fixed header before the metadata.
	ckptV2HeaderSize = 64
	// maxCheckpointMeta bounds the metadata (vCPU and device state, and
	// the disk overlay's written blocks, which are what can make it large)
	// so that a damaged length cannot make the reader allocate without
	// bound before the digest is checked.
	maxCheckpointMeta = 256 << 20
	// maxCheckpointPages bounds the stored pages (and runs): all of the
	// largest guest RAM there can be.
	maxCheckpointPages = maxMemBytes / 4096
)

// writeCheckpointV2 writes a version 2 file to w.
func writeCheckpointV2(w io.Writer, meta *checkpointMeta, mem []byte, runs []pageRun) error {
	var mb bytes.Buffer
	if err := gob.NewEncoder(&mb).Encode(meta); err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if mb.Len() > maxCheckpointMeta {
		return fmt.Errorf("checkpoint metadata is %d bytes, more than the %d a checkpoint may have", mb.Len(), maxCheckpointMeta)
	}
	var nPages uint64
	for _, r := range runs {
		nPages += r.Count
	}
	metaLen, nRuns := uint64(mb.Len()), uint64(len(runs))
	dataOff := (ckptV2HeaderSize + metaLen + 16*nRuns + 4095) &^ 4095
	prefix := make([]byte, dataOff)
	copy(prefix, checkpointMagic[:])
	le := binary.LittleEndian
	le.PutUint32(prefix[16:], 2)
	le.PutUint64(prefix[24:], metaLen)
	le.PutUint64(prefix[32:], nRuns)
	le.PutUint64(prefix[40:], nPages)
	le.PutUint64(prefix[48:], dataOff)
	copy(prefix[ckptV2HeaderSize:], mb.Bytes())
	rt := prefix[ckptV2HeaderSize+metaLen:]
	for i, r := range runs {
		le.PutUint64(rt[16*i:], r.First)
		le.PutUint64(rt[16*i+8:], r.Count)
	}
	h := treehash.New()
	h.Write(prefix)
	if _, err := w.Write(prefix); err != nil {
		return err
	}
	for _, r := range runs {
		for off, end := r.First*4096, (r.First+r.Count)*4096; off < end; {
			piece := mem[off:min(end, off+treehash.PieceSize)]
			h.Write(piece)
			if _, err := w.Write(piece); err != nil {
				return err
			}
			off += uint64(len(piece))
		}
	}
	d := h.Sum()
	_, err := w.Write(d[:])
	return err
}

// readCheckpointV2 reads the version 2 file f of the given size: the
// header, metadata and run table in one read, then each run of pages
// straight into guest memory 1 MiB at a time, hashing what it read while
// it is in the cache.
func readCheckpointV2(path string, f *os.File, size int64, alloc func(*checkpointMeta) ([]byte, error)) (*checkpointMeta, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: "+format, append([]any{path, ErrBadCheckpoint}, args...)...)
	}
	var hdr [ckptV2HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, bad("header: %v", err)
	}
	le := binary.LittleEndian
	flags, metaLen, nRuns := le.Uint32(hdr[20:]), le.Uint64(hdr[24:]), le.Uint64(hdr[32:])
	nPages, dataOff, reserved := le.Uint64(hdr[40:]), le.Uint64(hdr[48:]), le.Uint64(hdr[56:])
	switch {
	case flags != 0 || reserved != 0:
		return nil, bad("unknown flags %#x/%#x", flags, reserved)
	case metaLen > maxCheckpointMeta:
		return nil, bad("metadata of %d bytes (at most %d)", metaLen, maxCheckpointMeta)
	case nPages > maxCheckpointPages || nRuns > nPages:
		return nil, bad("%d pages in %d runs", nPages, nRuns)
	case dataOff != (ckptV2HeaderSize+metaLen+16*nRuns+4095)&^4095:
		return nil, bad("page data at %d, not after the metadata and run table", dataOff)
	case uint64(size) != dataOff+nPages*4096+32:
		return nil, bad("%d bytes, the header says %d (truncated or corrupted)", size, dataOff+nPages*4096+32)
	}
	prefix := make([]byte, dataOff)
	if _, err := f.ReadAt(prefix, 0); err != nil {
		return nil, bad("%v", err)
	}
	h := treehash.New()
	h.Write(prefix)
	runs := make([]pageRun, nRuns)
	rt := prefix[ckptV2HeaderSize+metaLen:]
	var next, total uint64
	for i := range runs {
		r := pageRun{First: le.Uint64(rt[16*i:]), Count: le.Uint64(rt[16*i+8:])}
		if r.Count == 0 || r.First < next || r.First >= maxCheckpointPages || r.Count > maxCheckpointPages-r.First {
			return nil, bad("page run %d (pages %d+%d) out of order or out of range", i, r.First, r.Count)
		}
		runs[i], next, total = r, r.First+r.Count, total+r.Count
	}
	if total != nPages {
		return nil, bad("the page runs hold %d pages, the header says %d", total, nPages)
	}
	var meta checkpointMeta
	dec := gob.NewDecoder(bytes.NewReader(prefix[ckptV2HeaderSize : ckptV2HeaderSize+metaLen]))
	if err := dec.Decode(&meta); err != nil {
		return nil, bad("metadata: %v", err)
	}
	mem, err := alloc(&meta)
	if err != nil {
		return nil, err
	}
	if n := len(runs); n > 0 && runs[n-1].First+runs[n-1].Count > uint64(len(mem))/4096 {
		return nil, bad("pages up to %d, beyond guest memory (%d pages)", runs[n-1].First+runs[n-1].Count, len(mem)/4096)
	}
	off := int64(dataOff)
	for _, r := range runs {
		for p, end := r.First*4096, (r.First+r.Count)*4096; p < end; {
			piece := mem[p:min(end, p+treehash.PieceSize)]
			if _, err := f.ReadAt(piece, off); err != nil {
				return nil, bad("pages: %v", err)
			}
			h.Write(piece)
			off += int64(len(piece))
			p += uint64(len(piece))
		}
	}
	var digest [32]byte
	if _, err := f.ReadAt(digest[:], off); err != nil {
		return nil, bad("digest: %v", err)
	}
	if h.Sum() != digest {
		return nil, bad("digest mismatch (corrupted)")
	}
	return &meta, nil
}
