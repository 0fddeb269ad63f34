package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Option configures a Writer.
type Option func(*writerOptions)

type writerOptions struct {
	blockSize int               // uncompressed bytes that close a block
	level     zstd.EncoderLevel // zstd speed/ratio trade-off
}

// WithBlockSize sets the uncompressed size at which a block is compressed
// and written (default DefaultBlockSize; 1..MaxBlockSize). Tests use small
// blocks to get many of them.
func WithBlockSize(n int) Option { return func(o *writerOptions) { o.blockSize = n } }

// WithLevel sets the zstd level (default zstd.SpeedDefault, which compresses
// chunk records at hundreds of MB/s, far above any recording rate).
func WithLevel(l zstd.EncoderLevel) Option { return func(o *writerOptions) { o.level = l } }

// Writer appends records to a recording with bounded memory: records are
// encoded into the open block, which is compressed and written once it
// reaches the block size, so memory use is about one block whatever the
// recording's length.
//
// Writer is safe for concurrent use, but the order of records is the order
// of Append calls, so the recorder must serialize them in commit order
// anyway; the lock only keeps Stats callable from another goroutine (a
// progress display).
type Writer struct {
	w         io.Writer     // destination; not closed by Close
	enc       *zstd.Encoder // shared compressor (EncodeAll only; see encoders)
	cpus      uint32        // Header.Config.CPUs, to validate records
	blockSize int           // from WithBlockSize

	// mu protects everything below.
	mu     sync.Mutex
	buf    []byte // encoded records of the open block
	count  uint32 // number of records in buf
	out    []byte // frame header + compressed payload, reused per block
	stats  Stats  // counters (byKind filled, ByKind built on demand)
	err    error  // first write error; the Writer is unusable after it
	closed bool   // Close was called
}

// NewWriter validates h, writes the preamble and the header block to w and
// returns a Writer for the records. The caller keeps ownership of w; if w
// has a `Flush() error` method (bufio.Writer), Flush and Close call it.
func NewWriter(w io.Writer, h *Header, opts ...Option) (*Writer, error) {
	o := writerOptions{blockSize: DefaultBlockSize, level: zstd.SpeedDefault}
	for _, opt := range opts {
		opt(&o)
	}
	if o.blockSize < 1 || o.blockSize > MaxBlockSize {
		return nil, fmt.Errorf("new log writer: block size %d not in 1..%d", o.blockSize, MaxBlockSize)
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("new log writer: %w", err)
	}
	hdr, err := marshalHeader(h)
	if err != nil {
		return nil, fmt.Errorf("new log writer: %w", err)
	}
	enc, err := sharedEncoder(o.level)
	if err != nil {
		return nil, fmt.Errorf("new log writer: zstd: %w", err)
	}
	lw := &Writer{w: w, enc: enc, cpus: uint32(h.Config.CPUs), blockSize: o.blockSize}
	pre := binary.LittleEndian.AppendUint32([]byte(magic), Version)
	if err := lw.write(pre); err != nil {
		return nil, fmt.Errorf("new log writer: %w", err)
	}
	if err := lw.writeBlock(hdr, 1); err != nil {
		return nil, fmt.Errorf("new log writer: header: %w", err)
	}
	return lw, nil
}

// Append adds rec (a non-nil pointer to one of this package's record types)
// to the open block, writing the block out if it is full. An invalid record
// (vCPU out of range, undefined Reason, wrong digest size) is refused with an
// error and leaves the Writer usable; a write error is returned by this and
// every later call.
func (w *Writer) Append(rec Record) error {
	c, ok := rec.(codec)
	if !ok {
		return fmt.Errorf("log append: unsupported record type %T", rec)
	}
	k := c.Kind()
	if err := c.validate(w.cpus); err != nil {
		return fmt.Errorf("log append %v: %w", k, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	start := len(w.buf)
	w.buf = append(w.buf, byte(k))
	w.buf = c.appendFields(w.buf)
	n := len(w.buf) - start
	if n > MaxBlockSize {
		w.buf = w.buf[:start]
		return fmt.Errorf("log append %v: %d bytes: %w (limit %d)", k, n, ErrRecordTooLarge, MaxBlockSize)
	}
	if len(w.buf) > MaxBlockSize {
		// The record does not fit in the open block: write the block
		// without it, then start the next block with it.
		if err := w.flushBlock(w.buf[:start], w.count); err != nil {
			return err
		}
		w.buf = w.buf[:copy(w.buf, w.buf[start:])]
		w.count = 0
	}
	w.count++
	w.stats.Records++
	w.stats.RawBytes += uint64(n)
	w.stats.byKind[k].Records++
	w.stats.byKind[k].Bytes += uint64(n)
	if len(w.buf) >= w.blockSize {
		return w.flushOpen()
	}
	return nil
}

// Flush writes the open block, if it holds records, and flushes w if it
// can. After Flush every record appended so far survives a crash of the
// recorder (given that w's bytes reach the disk).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.flushOpen(); err != nil {
		return err
	}
	return w.flushUnderlying()
}

// Close flushes the open block and writes the end marker, which tells a
// reader the recording is complete. It does not append an End record (the
// caller appends one first: only it knows the exit code) and does not close
// the underlying writer. Closing twice returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed && w.err == nil {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if err := w.flushOpen(); err != nil {
		return err
	}
	if err := w.write(frame{}.append(w.out[:0])); err != nil {
		return err
	}
	if err := w.flushUnderlying(); err != nil {
		return err
	}
	w.closed = true
	w.buf, w.out = nil, nil
	return nil
}

// Stats returns the counters so far. Records and raw bytes count every
// appended record; Blocks, CompressedBytes and FileBytes count what has
// been written out.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats.export()
}

// usable returns the error that makes w unusable, if any.
//
// Preconditions: w.mu must be held.
func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}

// flushOpen writes the open block if it is not empty.
//
// Preconditions: w.mu must be held.
func (w *Writer) flushOpen() error {
	if w.count == 0 {
		return nil
	}
	if err := w.flushBlock(w.buf, w.count); err != nil {
		return err
	}
	// A large record may have grown buf far past the block size; do not
	// keep that memory for the rest of the recording.
	if cap(w.buf) > 4*w.blockSize && cap(w.buf) > DefaultBlockSize {
		w.buf = nil
	}
	w.buf, w.count = w.buf[:0], 0
	return nil
}

// flushBlock writes one record block and counts it.
//
// Preconditions: w.mu must be held.
func (w *Writer) flushBlock(payload []byte, count uint32) error {
	before := w.stats.FileBytes
	if err := w.writeBlock(payload, count); err != nil {
		return err
	}
	w.stats.Blocks++
	w.stats.CompressedBytes += w.stats.FileBytes - before - frameHeaderSize
	return nil
}

// writeBlock compresses payload and writes frame header and payload with a
// single Write, so a crash tears at most this block.
func (w *Writer) writeBlock(payload []byte, count uint32) error {
	out := w.enc.EncodeAll(payload, append(w.out[:0], make([]byte, frameHeaderSize)...))
	z := out[frameHeaderSize:]
	f := frame{
		clen:  uint32(len(z)),
		ulen:  uint32(len(payload)),
		crc:   crc32.Checksum(z, castagnoli),
		count: count,
	}
	f.append(out[:0])
	w.out = out
	return w.write(out)
}

// write writes b to w, making any error sticky.
func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.stats.FileBytes += uint64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("write recording: %w", err)
		return w.err
	}
	return nil
}

// flushUnderlying flushes w.w if it buffers (bufio.Writer and the like).
func (w *Writer) flushUnderlying() error {
	f, ok := w.w.(interface{ Flush() error })
	if !ok {
		return nil
	}
	if err := f.Flush(); err != nil {
		w.err = fmt.Errorf("flush recording: %w", err)
		return w.err
	}
	return nil
}
