package snapshot

// The paged layout of format versions 2 and 3 (doc.go): a fixed header,
// the metadata and run table, then the pages, read straight into guest
// memory, and the tree digest. The versions differ only in how the
// metadata is encoded.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/samsara-vmm/samsara/internal/treehash"
)

// Version is the format version Write writes by default.
const Version = 3

const (
	// headerSize is the fixed header of versions 2 and 3.
	headerSize = 64
	// digestSize is the trailing tree digest.
	digestSize = 32
	// pageSize is the guest page size the runs count in.
	pageSize = 4096
	// MaxMetaBytes bounds the metadata (vCPU and device state and the disk
	// overlay's written blocks, which are what can make it large) so a
	// damaged length cannot make the reader allocate without bound.
	MaxMetaBytes = 256 << 20
	// MaxMemBytes bounds Meta.Mem and so the stored pages: far above what
	// samsara boots (internal/vmm allows 3 GiB), so the format does not
	// limit the machine; the caller applies its own limit in Read's alloc.
	MaxMemBytes = 64 << 30
	// MaxVCPUs bounds Meta.CPUs: KVM_MAX_VCPUS on x86.
	MaxVCPUs = 1024
)

var magic = [16]byte{'S', 'A', 'M', 'S', 'A', 'R', 'A', '-', 'C', 'K', 'P', 'T'}

// Run is a run of consecutive stored guest pages.
type Run struct {
	First, Count uint64 // first page number, number of pages
}

// Write writes meta and the pages of mem that runs name (ascending, not
// overlapping, within mem) to w in the given format version (Version,
// or 1 or 2 for the resume benchmark).
func Write(w io.Writer, meta *Meta, mem []byte, runs []Run, version uint32) error {
	switch version {
	case 1:
		return writeV1(w, meta, mem, runs)
	case 2:
		mb, err := encodeGob(meta)
		if err != nil {
			return err
		}
		return writePaged(w, 2, mb, mem, runs)
	case 3:
		mb, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("encode checkpoint metadata: %w", err)
		}
		return writePaged(w, 3, mb, mem, runs)
	default:
		return fmt.Errorf("no checkpoint format version %d", version)
	}
}

// writePaged writes a version 2 or 3 file with the encoded metadata mb.
func writePaged(w io.Writer, version uint32, mb []byte, mem []byte, runs []Run) error {
	if len(mb) > MaxMetaBytes {
		return fmt.Errorf("checkpoint metadata is %d bytes, more than the %d a checkpoint may have", len(mb), MaxMetaBytes)
	}
	var nPages uint64
	for _, r := range runs {
		nPages += r.Count
	}
	metaLen, nRuns := uint64(len(mb)), uint64(len(runs))
	dataOff := (headerSize + metaLen + 16*nRuns + pageSize - 1) &^ (pageSize - 1)
	prefix := make([]byte, dataOff)
	copy(prefix, magic[:])
	le := binary.LittleEndian
	le.PutUint32(prefix[16:], version)
	le.PutUint64(prefix[24:], metaLen)
	le.PutUint64(prefix[32:], nRuns)
	le.PutUint64(prefix[40:], nPages)
	le.PutUint64(prefix[48:], dataOff)
	copy(prefix[headerSize:], mb)
	rt := prefix[headerSize+metaLen:]
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
		for off, end := r.First*pageSize, (r.First+r.Count)*pageSize; off < end; {
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

// Read reads and verifies the checkpoint in r, size bytes, in any format
// version this samsara reads. alloc is called once the metadata is decoded
// and checked, and returns the guest memory to fill (all zero, at least
// meta.Mem bytes); its errors are returned as they are. A file that is
// not a checkpoint or is damaged is an *Error, detected before Read
// returns, though possibly after alloc's memory was written.
func Read(r io.ReaderAt, size int64, alloc func(*Meta) ([]byte, error)) (*Meta, error) {
	var hdr [20]byte
	n, err := r.ReadAt(hdr[:], 0)
	if n < len(hdr) && err != io.EOF && err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	switch {
	case n == 0:
		return nil, bad(ErrTruncated, "empty file")
	case !bytes.HasPrefix(magic[:], hdr[:min(n, len(magic))]):
		return nil, bad(ErrBadMagic, "")
	case n < len(hdr):
		return nil, bad(ErrTruncated, "%d bytes, shorter than a header", n)
	}
	switch v := binary.LittleEndian.Uint32(hdr[16:]); v {
	case 1:
		return readV1(r, size, alloc)
	case 2:
		return readPaged(r, size, decodeGob, alloc)
	case 3:
		return readPaged(r, size, decodeJSON, alloc)
	default:
		return nil, bad(ErrVersion, "version %d, this samsara reads 1 to %d", v, Version)
	}
}

// bad returns an *Error of the given kind.
func bad(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// decodeJSON decodes version 3 metadata.
func decodeJSON(b []byte) (*Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// readPaged reads a version 2 or 3 file: the header, metadata and run
// table in one read, then each run of pages straight into guest memory
// 1 MiB at a time, hashing what it read while it is in the cache.
func readPaged(r io.ReaderAt, size int64, decode func([]byte) (*Meta, error), alloc func(*Meta) ([]byte, error)) (*Meta, error) {
	var hdr [headerSize]byte
	if size < headerSize {
		return nil, bad(ErrTruncated, "%d bytes, shorter than a header", size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, bad(ErrTruncated, "header: %v", err)
	}
	le := binary.LittleEndian
	flags, metaLen, nRuns := le.Uint32(hdr[20:]), le.Uint64(hdr[24:]), le.Uint64(hdr[32:])
	nPages, dataOff, reserved := le.Uint64(hdr[40:]), le.Uint64(hdr[48:]), le.Uint64(hdr[56:])
	const maxPages = MaxMemBytes / pageSize
	switch {
	case flags != 0 || reserved != 0:
		return nil, bad(ErrMalformed, "unknown flags %#x/%#x", flags, reserved)
	case metaLen > MaxMetaBytes:
		return nil, bad(ErrTooLarge, "metadata of %d bytes (at most %d)", metaLen, MaxMetaBytes)
	case nPages > maxPages:
		return nil, bad(ErrTooLarge, "%d pages (at most %d)", nPages, maxPages)
	case nRuns > nPages:
		return nil, bad(ErrMalformed, "%d pages in %d runs", nPages, nRuns)
	case dataOff != (headerSize+metaLen+16*nRuns+pageSize-1)&^(pageSize-1):
		return nil, bad(ErrMalformed, "page data at %d, not after the metadata and run table", dataOff)
	}
	// All three are bounded above, so this cannot overflow.
	if want := dataOff + nPages*pageSize + digestSize; uint64(size) < want {
		return nil, bad(ErrTruncated, "%d bytes, the header says %d", size, want)
	} else if uint64(size) > want {
		return nil, bad(ErrMalformed, "%d bytes, the header says %d (trailing data)", size, want)
	}
	prefix := make([]byte, dataOff)
	if _, err := r.ReadAt(prefix, 0); err != nil {
		return nil, bad(ErrTruncated, "%v", err)
	}
	h := treehash.New()
	h.Write(prefix)
	runs := make([]Run, nRuns)
	rt := prefix[headerSize+metaLen:]
	var next, total uint64
	for i := range runs {
		run := Run{First: le.Uint64(rt[16*i:]), Count: le.Uint64(rt[16*i+8:])}
		if run.Count == 0 || run.First < next || run.First >= maxPages || run.Count > maxPages-run.First {
			return nil, bad(ErrMalformed, "page run %d (pages %d+%d) out of order or out of range", i, run.First, run.Count)
		}
		runs[i], next, total = run, run.First+run.Count, total+run.Count
	}
	if total != nPages {
		return nil, bad(ErrMalformed, "the page runs hold %d pages, the header says %d", total, nPages)
	}
	meta, err := decode(prefix[headerSize : headerSize+metaLen])
	if err != nil {
		return nil, bad(ErrMalformed, "metadata: %v", err)
	}
	if err := meta.check(); err != nil {
		return nil, err
	}
	if next > meta.Mem/pageSize {
		return nil, bad(ErrMalformed, "pages up to %d, beyond guest memory (%d pages)", next, meta.Mem/pageSize)
	}
	mem, err := alloc(meta)
	if err != nil {
		return nil, err
	}
	if uint64(len(mem)) < meta.Mem {
		return nil, fmt.Errorf("checkpoint: %d bytes of memory to restore %d into", len(mem), meta.Mem)
	}
	off := int64(dataOff)
	for _, run := range runs {
		for p, end := run.First*pageSize, (run.First+run.Count)*pageSize; p < end; {
			piece := mem[p:min(end, p+treehash.PieceSize)]
			if _, err := r.ReadAt(piece, off); err != nil {
				return nil, bad(ErrTruncated, "pages: %v", err)
			}
			h.Write(piece)
			off += int64(len(piece))
			p += uint64(len(piece))
		}
	}
	var digest [digestSize]byte
	if _, err := r.ReadAt(digest[:], off); err != nil {
		return nil, bad(ErrTruncated, "digest: %v", err)
	}
	if h.Sum() != digest {
		return nil, bad(ErrDigest, "")
	}
	return meta, nil
}
