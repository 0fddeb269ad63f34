// Package snapshot is samsara's checkpoint file format: its reader and
// writer, its header, version rules, digest and size limits, and its own
// state structs for everything a checkpoint holds besides guest RAM
// (Meta: registers, segments and descriptor tables, FPU, the XSAVE area as
// bytes, MSRs, pending vCPU events, the vCPU run state, the kernel marks
// and spin ranges; the devices' state comes as internal/devices' own
// snapshot structs).
//
// What it may import: the standard library, internal/devices (the device
// state structs), internal/treehash (the digest), and the zstd package for
// reading format version 1. Not gokvm, internal/kvm, internal/vmm,
// internal/chunk or any recorder package (internal/layout's test checks
// it): internal/vmm converts between its gokvm and vmm types and these
// structs (internal/vmm/checkpoint.go), so a gokvm update or a vmm
// refactoring cannot change the file.
//
// # File layout, format version 3 (little-endian)
//
//	0     magic    "SAMSARA-CKPT\x00\x00\x00\x00" (16 bytes)
//	16    version  uint32 = 3
//	20    flags    uint32, 0
//	24    metaLen  uint64, at most MaxMetaBytes
//	32    nRuns    uint64, runs of stored pages
//	40    nPages   uint64, stored pages (the sum of the runs' counts),
//	               at most MaxMemBytes/4096
//	48    dataOff  uint64 = 64+metaLen+16*nRuns rounded up to 4096
//	56    reserved uint64, 0
//	64    meta     JSON of Meta, metaLen bytes; each VCPU in it is one
//	               base64 string of a binary record (vcpu.go)
//	      runs     nRuns x {first page number uint64, page count uint64},
//	               ascending, not overlapping, within Meta.Mem
//	      zeros up to dataOff
//	dataOff pages  the runs' pages, 4096 bytes each, uncompressed, in run
//	               order (every non-zero 4 KiB page of guest RAM; the
//	               others are zero)
//	end-32 digest  the tree digest (internal/treehash) of everything
//	               before it
//
// Every length is checked against its limit and against the file's size
// before anything is allocated for it, so a damaged or hostile file is
// rejected with an *Error (errors.Is: ErrBadMagic, ErrVersion,
// ErrTruncated, ErrTooLarge, ErrDigest, ErrMalformed; and ErrBad for any of
// them) instead of a panic or an allocation it chooses. Guest memory is
// allocated by the caller (Read's alloc) from Meta.Mem, which is checked
// against MaxMemBytes first.
//
// Why JSON for the metadata: it is decoded into this package's structs by
// field name (a field added later decodes as zero from an older file, a
// field removed is ignored), and encoding/json allocates in proportion to
// its input, where encoding/gob "is not designed to be hardened against
// adversarial inputs" (its package doc) and pre-sizes a map from a length
// it reads, so a crafted gob can make it allocate gigabytes. The vCPU
// state, mostly arrays of small numbers that encoding/json decodes slowly,
// is a binary record inside it (vcpu.go), so decoding a 2-vCPU machine's
// metadata costs about what the old gob did (~0.3-0.5 ms natively). The
// bulk of a checkpoint, guest RAM, is read straight into guest memory.
// The disk overlay's blocks are in the JSON as base64; they are empty or
// a few blocks at the reference init's checkpoint request.
//
// # Versions
//
//   - 1: magic, version, then a zstd stream of gob(metadata) and, for every
//     non-zero page, uint64 page number + 4096 bytes, ended by page number
//     2^64-1; then the SHA-256 of everything before it. Read; written only
//     for the resume benchmark (tests/bench resume).
//   - 2: the version 3 layout with gob(metadata) of internal/vmm's structs,
//     which embedded gokvm's kvm.Regs, kvm.Sregs and kvm.VCPUEvents.
//     Exists because resuming from version 1 took 9-10 s in the emulated
//     SVM host (SHA-256 and zstd are 10-100x slower under QEMU TCG).
//     Read (legacy.go decodes the gob by field name into structs of the
//     same shape); written only for the resume benchmark.
//   - 3: JSON metadata of this package's own structs; written.
//
// Versions 1 and 2 are read because users keep cached checkpoints; their
// gob metadata is decoded only after the header checks, and within
// MaxMetaBytes, but gob's map pre-sizing (above) is outside this
// package's control: only version 3 is hardened against crafted input.
//
// Bump Version when the layout changes or Meta, a struct in it or a
// devices state struct changes so that an older samsara would misread a
// new file or a new one an old file: a field renamed, retyped or given a
// new meaning, a run-state value renumbered. A field added whose zero
// value means "as before" needs no bump. Keep reading the older version
// when cached checkpoints made with it should still load (Read's switch),
// and say here what it was.
package snapshot
