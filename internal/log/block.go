package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Version is the format version written after the magic.
//
// Bump it when a reader of the previous version would misread a file of the
// new one: a record kind or Reason added, a field added, removed, reordered
// or re-encoded, a frame or preamble change, or a change in what a field
// means (e.g. what Point.UserBranches counts). Adding a header JSON field
// that older readers may ignore does not need a bump. The reader accepts
// only this exact version (see doc.go, "Versioning").
//
// History:
//
//	1  the first format
//	2  record kind 10, RecorderStats (a version 1 reader would report the
//	   end of every parallel recording as an unknown kind)
//	3  chunk reason 9, ReasonPrivilege (parallel recordings end most
//	   chunks with it; a version 2 reader would reject them)
//	4  Digest.Memory is the tree digest of guest memory (XXH64 per MiB,
//	   SHA-256 over those; internal/treehash), not its SHA-256: a
//	   version 3 replay would report every version 4 recording diverged
//	5  Chunk.GuestMicros, the guest time each chunk's end added (measured
//	   from the host's clock), chunk reason 10 (ReasonYield), and the
//	   header's recorder_options (the
//	   chunk-end switches that were environment variables before): a
//	   version 4 reader would misread every chunk
//	6  chunk reason 11 (ReasonStateMatch), whose End.Regs hashes the
//	   full vCPU state: a version 5 reader would reject such chunks
//	7  record kind 11 (StateStop) and chunk reason 12 (ReasonStateStop):
//	   a version 6 reader would reject serialized recordings of guests
//	   that loop without exits
//	8  StateStop.ExitRegs after CodePage: a version 7 reader would
//	   misread every state stop
const Version uint32 = 8

// magic opens every recording. The NUL after "SAMSARA" stops text tools
// from treating the file as text; "REC" leaves room for other samsara file
// types (checkpoints) with their own magic.
const magic = "SAMSARA\x00REC\x00"

const (
	// preambleSize is magic plus version.
	preambleSize = len(magic) + 4
	// frameHeaderSize is the four uint32 words before each payload.
	frameHeaderSize = 16

	// MaxBlockSize is the largest uncompressed record block a reader
	// accepts (and so the largest single record a writer can store). It
	// bounds the reader's memory per block; the writer's blocks are much
	// smaller (DefaultBlockSize), the margin is for one large ConsoleInput.
	MaxBlockSize = 16 << 20
	// MaxCompressedBlockSize is the largest compressed payload a reader
	// accepts: zstd's worst-case output for MaxBlockSize of incompressible
	// input is the input plus 1/256, plus a few hundred bytes of frame
	// and block headers; 4 KiB covers those with room to spare.
	MaxCompressedBlockSize = MaxBlockSize + MaxBlockSize>>8 + 4096
	// MaxHeaderSize is the largest header JSON accepted; real headers are a
	// few hundred bytes, but argv and command lines are user-controlled.
	MaxHeaderSize = 1 << 20

	// DefaultBlockSize is the uncompressed size at which the Writer closes a
	// block. 256 KiB is past the point where zstd's ratio on chunk records
	// stops improving (its matches mostly reach back a few records), small
	// enough that a crash loses little and a reader needs little memory, and
	// large enough that the 16-byte frame and zstd's frame overhead vanish.
	DefaultBlockSize = 256 << 10
)

var (
	// ErrNotRecording means the input does not start with the magic.
	ErrNotRecording = errors.New("not a samsara recording")
	// ErrUnsupportedVersion means the recording's format version is not
	// Version; the error text says whether it is older or newer.
	ErrUnsupportedVersion = errors.New("unsupported recording format version")
	// ErrCorrupt is matched (errors.Is) by every *CorruptError.
	ErrCorrupt = errors.New("corrupt recording")
	// ErrClosed is returned by a Writer used after Close.
	ErrClosed = errors.New("log writer closed")
	// ErrRecordTooLarge is returned by Writer.Append for a record whose
	// encoding exceeds MaxBlockSize.
	ErrRecordTooLarge = errors.New("record too large")
)

// CorruptError reports a damaged or truncated recording. Everything before
// Offset is intact: a Reader has returned every record stored before it.
type CorruptError struct {
	// Offset is the file offset of the damaged block's frame header (for a
	// damaged preamble, 0). A recording cut at a block boundary reports the
	// cut as Offset.
	Offset int64
	// Block is the index of the damaged block; the header block is 0 and
	// record blocks count from 1.
	Block int
	// What describes the damage.
	What string
	// Err is the underlying cause, if any (e.g. a wrapped ErrUnknownKind).
	Err error
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("corrupt recording: block %d at offset %d: %s", e.Block, e.Offset, e.What)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrCorrupt) true for every *CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the underlying cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// frame is a block's frame header (see doc.go). All zero is the end marker.
type frame struct {
	clen  uint32 // compressed payload length
	ulen  uint32 // uncompressed payload length
	crc   uint32 // CRC-32C of the compressed payload
	count uint32 // records in the block (1 for the header block)
}

func (f frame) isEnd() bool { return f == frame{} }

func (f frame) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, f.clen)
	b = binary.LittleEndian.AppendUint32(b, f.ulen)
	b = binary.LittleEndian.AppendUint32(b, f.crc)
	return binary.LittleEndian.AppendUint32(b, f.count)
}

func parseFrame(b []byte) frame {
	return frame{
		clen:  binary.LittleEndian.Uint32(b[0:]),
		ulen:  binary.LittleEndian.Uint32(b[4:]),
		crc:   binary.LittleEndian.Uint32(b[8:]),
		count: binary.LittleEndian.Uint32(b[12:]),
	}
}

// check validates a frame header against the limits before anything is
// allocated for its payload. maxU is MaxHeaderSize or MaxBlockSize.
func (f frame) check(maxU int) error {
	switch {
	case f.clen == 0:
		return errors.New("end marker has nonzero fields")
	case f.clen > MaxCompressedBlockSize:
		return fmt.Errorf("compressed length %d exceeds the %d byte limit", f.clen, MaxCompressedBlockSize)
	case f.ulen == 0:
		return errors.New("empty block")
	case f.ulen > uint32(maxU):
		return fmt.Errorf("uncompressed length %d exceeds the %d byte limit", f.ulen, maxU)
	case f.count == 0:
		return errors.New("block holds no records")
	case f.count > f.ulen:
		// Every record is at least one byte (its kind).
		return fmt.Errorf("record count %d exceeds uncompressed length %d", f.count, f.ulen)
	}
	return nil
}

// castagnoli is CRC-32C: hardware-accelerated on x86-64 (SSE4.2), so the
// check costs nothing next to decompression, and better at burst errors
// than IEEE CRC-32.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zstdDecoder returns the process-wide zstd decoder. DecodeAll is safe for
// concurrent use, and one decoder avoids re-allocating its tables for every
// Reader (which matters for the fuzzer and for inspect over many files).
// WithDecodeAllCapLimit makes DecodeAll stop at cap(dst), which the reader
// sets to the declared length, so a lying frame cannot make it allocate.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxBlockSize),
		zstd.WithDecodeAllCapLimit(true),
	)
})

// encoders holds one zstd encoder per level (zstd.EncoderLevel ->
// *zstd.Encoder), shared by all Writers of the process. An encoder carries
// about 0.5 MiB of match tables, allocated when it is created; sharing
// makes a Writer cheap to create (tests, the fuzzer's re-encode). With
// concurrency 1, Writers compressing at the same moment take turns, which
// costs nothing in practice: a process records one VM at a time.
var encoders sync.Map

func sharedEncoder(l zstd.EncoderLevel) (*zstd.Encoder, error) {
	if e, ok := encoders.Load(l); ok {
		return e.(*zstd.Encoder), nil
	}
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(l))
	if err != nil {
		return nil, err
	}
	actual, _ := encoders.LoadOrStore(l, e)
	return actual.(*zstd.Encoder), nil
}
