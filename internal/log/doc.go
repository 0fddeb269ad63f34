// Package log is samsara's recording format: what `samsara record` writes,
// `samsara replay` reads back and `samsara inspect` summarizes.
//
// A recording holds the commit order of the guest's chunks plus every
// non-deterministic event (NDE) the guest consumed, in the order the replayer
// must feed them back. The format follows rr's trace files: one documented
// schema with an explicit version, blocks compressed independently, so that a
// recording cut short by a crash or a full disk still yields its intact
// prefix (which is exactly what is needed to replay up to the crash).
//
// # File layout
//
// All fixed-width integers are little-endian.
//
//	offset  size  field
//	0       12    magic "SAMSARA\x00REC\x00"
//	12      4     format version (uint32, == Version)
//	16      ...   header block   (one frame, payload = JSON Header)
//	...     ...   record blocks  (frames, payload = encoded records)
//	...     16    end marker     (a frame header of four zero words)
//
// A frame is a 16-byte frame header followed by its payload:
//
//	0   uint32  compressed length   (bytes of payload that follow)
//	4   uint32  uncompressed length (bytes after zstd decompression)
//	8   uint32  CRC-32C (Castagnoli) of the compressed payload bytes
//	12  uint32  record count        (1 for the header block)
//
// Every payload is one or more complete zstd frames compressed on their own:
// no block refers to another block's bytes, so losing block N loses nothing
// before it.
//
// The end marker is written by Writer.Close. Its absence is how a reader
// tells "the recorder crashed after block N" from "the recording ended after
// block N": a log that stops exactly at a block boundary without the marker
// is reported as truncated (a *CorruptError) after its records.
//
// # Records
//
// A block's uncompressed payload is a sequence of records, each one kind byte
// (see Kind) followed by the kind's fields. Unsigned fields are unsigned
// varints (encoding/binary.AppendUvarint); signed fields, including RIP and
// RCX, are zig-zag varints (binary.AppendVarint) because canonical x86-64
// kernel addresses are sign-extended: 0xffffffff81000000 takes 10 bytes as a
// uvarint but 5 as a varint. Byte strings are a uvarint length followed by the
// bytes; hashes are 32 raw bytes. Point is five fields in this order:
// UserBranches (uvarint), KernelInsns (uvarint), RIP (varint), RCX (varint),
// Regs (8 bytes, little-endian: a hash, which a varint would not shorten).
//
//	kind  record          fields after the kind byte
//	1     Chunk           vcpu uv, end Point, reason byte, squashes uv, exits uv
//	2     PIORead         vcpu uv, port uv (<= 0xffff), size byte, value uv
//	3     MMIORead        vcpu uv, addr uv, size byte, value uv
//	4     Interrupt       vcpu uv, vector byte, at Point
//	5     DiskCompletion  seq uv, vcpu uv, at Point
//	6     ConsoleInput    length uv, data bytes
//	7     Time            vcpu uv, nanos v
//	8     Digest          seq uv, n uv (== CPUs), n x 32-byte vCPU hash, 32-byte memory hash
//	9     End             exit code v (int32 range), length uv, reason bytes, guest nanos uv
//	10    RecorderStats   length uv, tracker bytes, n uv (== CPUs), n x VCPUStats,
//	                      m uv (<= 65), m x (bucket uv, chunks uv)
//	11    StateStop       vcpu uv, length uv, arch bytes, code page uv, exit registers uv, n uv, n x page-number
//	                      delta uv (ascending), n x 4096 page bytes
//
// (uv: uvarint; v: zig-zag varint; every vcpu is below Header.Config.CPUs and
// fits a uint32.) codec.go implements exactly this table.
//
// RecorderStats (parallel recordings only, once, just before the final
// Digest and End) is for `inspect`: VCPUStats is five uvarints, commits,
// squashes, exclusive runs, committed work, re-executed work, where work is
// counted in units of "guest kernel instructions retired + 1" per chunk. The
// chunk-size histogram stores only its non-empty power-of-two buckets:
// bucket 0 counts chunks of 0 units, bucket i >= 1 chunks of [2^(i-1), 2^i)
// units; bucket indexes are strictly increasing and below 65, and no stored
// count is zero, so each histogram has exactly one encoding.
//
// Records appear in replay order: a Chunk record is followed by the NDEs its
// chunk consumed, then the next committed Chunk, and so on. This package does
// not enforce that order; it only stores what the recorder appends.
//
// # Validation and limits
//
// Recordings are untrusted input (they are shared in bug reports). The reader
// checks, before allocating anything sized by the file, that the compressed
// length is at most MaxCompressedBlockSize and the uncompressed length at most
// MaxBlockSize (MaxHeaderSize for the header block); then the CRC; then that
// the payload decompresses to exactly the declared length; then that it
// decodes to exactly the declared number of records with no bytes left over,
// that each record's fields fit their types and that every vCPU index is
// below the header's CPU count. A block is only handed out after all of that
// passed, so no record of a damaged block is ever returned.
//
// Any violation is a *CorruptError (errors.Is(err, ErrCorrupt)) whose Offset
// is the file offset of the damaged block's frame header: everything before
// Offset is intact. A record kind this package does not know is also a
// corruption, and the error wraps ErrUnknownKind and names the kind number.
//
// # Versioning
//
// See Version for when to bump it. A reader rejects any other version with
// ErrUnsupportedVersion rather than guessing, because misreading one record
// field silently turns a replay into a divergence hunt.
package log
