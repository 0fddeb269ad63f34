package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Reader reads a recording record by record. It holds one block in memory
// at a time. It is not safe for concurrent use.
type Reader struct {
	r    io.Reader // the recording
	h    *Header   // decoded header block
	cpus uint32    // h.Config.CPUs, to validate records

	off      int64   // file offset of the next byte to read from r
	block    int     // index of the next block to read (header is 0)
	cur      int     // index of the block being read or returned
	blockOff int64   // file offset of the current block's frame header
	comp     []byte  // compressed payload buffer, reused across blocks
	raw      []byte  // current block's uncompressed payload, reused
	dec      decoder // position in raw of the next record to return
	left     uint32  // records of the current block not yet returned
	// scratch holds one reused record per kind for the validation pass.
	scratch [numKinds]codec
	stats   Stats // counters of what has been returned
	err     error // terminal error: io.EOF, *CorruptError or an I/O error
}

// Open reads and checks the preamble and the header block. It returns an
// error wrapping ErrNotRecording if r is not a samsara recording,
// ErrUnsupportedVersion for another format version, a *CorruptError for a
// damaged or truncated header, or the read error.
func Open(r io.Reader) (*Reader, error) {
	lr := &Reader{r: r}
	var pre [preambleSize]byte
	n, err := io.ReadFull(r, pre[:])
	lr.off = int64(n)
	switch {
	case n >= len(magic) && string(pre[:len(magic)]) != magic,
		n < len(magic) && !bytes.HasPrefix([]byte(magic), pre[:n]):
		return nil, fmt.Errorf("open recording: %w (bad magic %q)", ErrNotRecording, pre[:min(n, len(magic))])
	case n == 0 && errors.Is(err, io.EOF):
		return nil, fmt.Errorf("open recording: %w (empty input)", ErrNotRecording)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, &CorruptError{What: fmt.Sprintf("truncated preamble: %d of %d bytes", n, preambleSize)}
	case err != nil:
		return nil, fmt.Errorf("open recording: %w", err)
	}
	if v := binary.LittleEndian.Uint32(pre[len(magic):]); v != Version {
		rel := "older"
		if v > Version {
			rel = "newer"
		}
		return nil, fmt.Errorf("open recording: %w: file has version %d, %s than this samsara's %d",
			ErrUnsupportedVersion, v, rel, Version)
	}

	f, err := lr.readBlock(MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	if f.isEnd() {
		return nil, lr.corrupt("end marker instead of the header block", nil)
	}
	if f.count != 1 {
		return nil, lr.corrupt(fmt.Sprintf("header block declares %d records, want 1", f.count), nil)
	}
	h, err := unmarshalHeader(lr.raw)
	if err != nil {
		return nil, lr.corrupt("bad header", err)
	}
	lr.h, lr.cpus = h, uint32(h.Config.CPUs)
	return lr, nil
}

// Header returns the recording's header.
func (r *Reader) Header() *Header { return r.h }

// Next returns the next record. At the end of a complete recording it
// returns io.EOF. If the recording is truncated or damaged, it first returns
// every record of the intact blocks before the damage and then a
// *CorruptError; a block is never partly returned. After an error, Next
// keeps returning that error.
func (r *Reader) Next() (Record, error) {
	for r.left == 0 {
		if r.err != nil {
			return nil, r.err
		}
		r.err = r.nextBlock()
	}
	start := r.dec.off
	rec, err := decodeRecord(&r.dec, r.cpus, nil)
	if err != nil {
		// The validation pass decoded these very bytes without error.
		panic(fmt.Sprintf("log: block %d failed to decode after validation: %v", r.cur, err))
	}
	r.left--
	k := rec.Kind()
	n := uint64(r.dec.off - start)
	r.stats.Records++
	r.stats.RawBytes += n
	r.stats.byKind[k].Records++
	r.stats.byKind[k].Bytes += n
	return rec, nil
}

// Stats returns counters over the records returned so far (Blocks,
// CompressedBytes and FileBytes cover the blocks read so far, including the
// current one).
func (r *Reader) Stats() Stats { return r.stats.export() }

// ReadAll reads a whole recording. It returns the header and every record
// before the first error; the error is nil at the clean end, otherwise what
// Open or Next returned (typically a *CorruptError after the intact prefix).
func ReadAll(rd io.Reader) (*Header, []Record, error) {
	r, err := Open(rd)
	if err != nil {
		return nil, nil, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r.h, recs, nil
		}
		if err != nil {
			return r.h, recs, err
		}
		recs = append(recs, rec)
	}
}

// nextBlock reads and validates the next record block, or detects the end.
// It returns io.EOF at a clean end.
func (r *Reader) nextBlock() error {
	f, err := r.readBlock(MaxBlockSize)
	if err != nil {
		return err
	}
	if f.isEnd() {
		// Anything after the end marker means the file is not what the
		// writer produced (two recordings concatenated, a botched copy).
		var b [1]byte
		switch n, err := io.ReadFull(r.r, b[:]); {
		case n > 0:
			r.blockOff, r.cur = r.off, r.block
			return r.corrupt("data after the end marker", nil)
		case err != io.EOF:
			return fmt.Errorf("read recording at offset %d: %w", r.off, err)
		}
		return io.EOF
	}
	// Validation pass: decode every record into scratch records without
	// keeping them, so that Next hands out no record of a bad block and
	// validating costs no allocation per record.
	d := decoder{b: r.raw, alias: true}
	var i uint32
	for d.remaining() > 0 {
		if i == f.count {
			return r.corrupt(fmt.Sprintf("%d bytes after the %d declared records", d.remaining(), f.count), nil)
		}
		if _, err := decodeRecord(&d, r.cpus, r.scratch[:]); err != nil {
			return r.corrupt(fmt.Sprintf("record %d", i), err)
		}
		i++
	}
	if i != f.count {
		return r.corrupt(fmt.Sprintf("%d records decoded, %d declared", i, f.count), nil)
	}
	r.dec = decoder{b: r.raw}
	r.left = f.count
	r.stats.Blocks++
	r.stats.CompressedBytes += uint64(f.clen)
	return nil
}

// readBlock reads one frame: its header, and unless it is the end marker,
// its payload, which it checks and decompresses into r.raw.
func (r *Reader) readBlock(maxU int) (frame, error) {
	r.blockOff, r.cur = r.off, r.block
	r.block++
	var fh [frameHeaderSize]byte
	n, err := io.ReadFull(r.r, fh[:])
	r.off += int64(n)
	r.stats.FileBytes = uint64(r.off)
	switch {
	case n == 0 && err == io.EOF && r.cur == 0:
		return frame{}, r.corrupt("recording ends before the header block", nil)
	case n == 0 && err == io.EOF:
		return frame{}, r.corrupt("recording ends without an end marker (the recorder did not finish)", nil)
	case err == io.ErrUnexpectedEOF:
		return frame{}, r.corrupt(fmt.Sprintf("truncated frame header: %d of %d bytes", n, frameHeaderSize), nil)
	case err != nil:
		return frame{}, fmt.Errorf("read recording at offset %d: %w", r.off, err)
	}
	f := parseFrame(fh[:])
	if f.isEnd() {
		return f, nil
	}
	if err := f.check(maxU); err != nil {
		return frame{}, r.corrupt("bad frame header", err)
	}
	if err := r.readPayload(int(f.clen)); err != nil {
		return frame{}, err
	}
	if got := crc32.Checksum(r.comp, castagnoli); got != f.crc {
		return frame{}, r.corrupt(fmt.Sprintf("CRC-32C mismatch: stored %#08x, computed %#08x", f.crc, got), nil)
	}
	dec, err := zstdDecoder()
	if err != nil {
		return frame{}, fmt.Errorf("zstd decoder: %w", err)
	}
	if cap(r.raw) < int(f.ulen) {
		r.raw = make([]byte, 0, f.ulen)
	}
	// The cap limit (see zstdDecoder) stops DecodeAll at cap(r.raw) bytes.
	r.raw, err = dec.DecodeAll(r.comp, r.raw[:0:f.ulen])
	if err != nil {
		return frame{}, r.corrupt("decompress", err)
	}
	if len(r.raw) != int(f.ulen) {
		return frame{}, r.corrupt(fmt.Sprintf("decompressed to %d bytes, declared %d", len(r.raw), f.ulen), nil)
	}
	return f, nil
}

// readPayload reads n compressed bytes into r.comp. It grows the buffer as
// data arrives instead of allocating n up front, so a truncated file that
// declares a huge block costs memory in proportion to what it really holds.
func (r *Reader) readPayload(n int) error {
	const step = 64 << 10
	buf := r.comp[:0]
	for len(buf) < n {
		want := min(n-len(buf), step)
		buf = slices.Grow(buf, want)
		got, err := io.ReadFull(r.r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+got]
		r.off += int64(got)
		r.stats.FileBytes = uint64(r.off)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			r.comp = buf
			return r.corrupt(fmt.Sprintf("truncated payload: %d of %d bytes", len(buf), n), nil)
		case err != nil:
			r.comp = buf
			return fmt.Errorf("read recording at offset %d: %w", r.off, err)
		}
	}
	r.comp = buf
	return nil
}

// corrupt returns a *CorruptError for the current block.
func (r *Reader) corrupt(what string, err error) *CorruptError {
	return &CorruptError{Offset: r.blockOff, Block: r.cur, What: what, Err: err}
}
