package vmm

// The checkpoint digest of format version 2 (checkpoint.go).
//
// SHA-256 over a 100+ MiB file costs seconds where samsara itself runs
// under QEMU TCG (the emulated SVM host, PLATFORM.md): measured under
// qemu-x86_64 -cpu max, Go's SHA-256 hashes 13-35 MB/s, XXH64 about
// 1100 MB/s (natively 1.3 GB/s against 5.8 GB/s). So the file is hashed
// as a two-level tree: the bytes before the digest are cut into 1 MiB
// pieces at fixed file offsets, each piece is hashed with XXH64 (seeded
// with its index), and the digest is the SHA-256 of the pieces' XXH64
// values (8 bytes each, little-endian), which is 8 bytes per MiB. Any
// change to the file changes a piece's XXH64 with probability 1-2^-64, so
// damage is detected; it is not a defence against someone crafting a
// collision on purpose, which checkpoints do not need (they are the
// user's own files, like the kernel they were booted from).

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/bits"
)

// ckptPieceSize is the length of one XXH64 piece of the digest tree.
const ckptPieceSize = 1 << 20

// ckptHasher computes the version 2 digest of everything written to it.
type ckptHasher struct {
	top   hash.Hash // SHA-256 of the finished pieces' XXH64
	piece xxh64     // the current piece
	index uint64    // the current piece's index
	n     int       // bytes in the current piece
}

func newCkptHasher() *ckptHasher {
	h := &ckptHasher{top: sha256.New()}
	h.piece.reset(0)
	return h
}

// Write adds b; it never fails.
func (h *ckptHasher) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		k := min(len(b), ckptPieceSize-h.n)
		h.piece.write(b[:k])
		h.n += k
		b = b[k:]
		if h.n == ckptPieceSize {
			h.endPiece()
		}
	}
	return total, nil
}

func (h *ckptHasher) endPiece() {
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], h.piece.sum())
	h.top.Write(v[:])
	h.index++
	h.n = 0
	h.piece.reset(h.index)
}

// Sum returns the digest; the hasher must not be used afterwards.
func (h *ckptHasher) Sum() [32]byte {
	if h.n > 0 {
		h.endPiece()
	}
	var d [32]byte
	h.top.Sum(d[:0])
	return d
}

// XXH64, as specified in https://github.com/Cyan4973/xxHash
// (doc/xxhash_spec.md), streaming.
const (
	xxPrime1 uint64 = 0x9E3779B185EBCA87
	xxPrime2 uint64 = 0xC2B2AE3D27D4EB4F
	xxPrime3 uint64 = 0x165667B19E3779F9
	xxPrime4 uint64 = 0x85EBCA77C2B2AE63
	xxPrime5 uint64 = 0x27D4EB2F165667C5
)

type xxh64 struct {
	seed           uint64
	v1, v2, v3, v4 uint64
	total          uint64
	buf            [32]byte
	nbuf           int
}

func (x *xxh64) reset(seed uint64) {
	*x = xxh64{seed: seed, v1: seed + xxPrime1 + xxPrime2, v2: seed + xxPrime2, v3: seed, v4: seed - xxPrime1}
}

func xxRound(acc, in uint64) uint64 {
	return bits.RotateLeft64(acc+in*xxPrime2, 31) * xxPrime1
}

func xxMerge(acc, v uint64) uint64 {
	return (acc^xxRound(0, v))*xxPrime1 + xxPrime4
}

func (x *xxh64) write(b []byte) {
	x.total += uint64(len(b))
	if x.nbuf > 0 {
		k := copy(x.buf[x.nbuf:], b)
		x.nbuf += k
		b = b[k:]
		if x.nbuf < 32 {
			return
		}
		x.stripes(x.buf[:])
		x.nbuf = 0
	}
	n := len(b) &^ 31
	x.stripes(b[:n])
	x.nbuf = copy(x.buf[:], b[n:])
}

// stripes consumes b, whose length is a multiple of 32.
func (x *xxh64) stripes(b []byte) {
	v1, v2, v3, v4 := x.v1, x.v2, x.v3, x.v4
	for len(b) >= 32 {
		s := b[:32:32]
		v1 = xxRound(v1, binary.LittleEndian.Uint64(s[0:8]))
		v2 = xxRound(v2, binary.LittleEndian.Uint64(s[8:16]))
		v3 = xxRound(v3, binary.LittleEndian.Uint64(s[16:24]))
		v4 = xxRound(v4, binary.LittleEndian.Uint64(s[24:32]))
		b = b[32:]
	}
	x.v1, x.v2, x.v3, x.v4 = v1, v2, v3, v4
}

func (x *xxh64) sum() uint64 {
	var h uint64
	if x.total >= 32 {
		h = bits.RotateLeft64(x.v1, 1) + bits.RotateLeft64(x.v2, 7) + bits.RotateLeft64(x.v3, 12) + bits.RotateLeft64(x.v4, 18)
		h = xxMerge(h, x.v1)
		h = xxMerge(h, x.v2)
		h = xxMerge(h, x.v3)
		h = xxMerge(h, x.v4)
	} else {
		h = x.seed + xxPrime5
	}
	h += x.total
	b := x.buf[:x.nbuf]
	for ; len(b) >= 8; b = b[8:] {
		h ^= xxRound(0, binary.LittleEndian.Uint64(b))
		h = bits.RotateLeft64(h, 27)*xxPrime1 + xxPrime4
	}
	if len(b) >= 4 {
		h ^= uint64(binary.LittleEndian.Uint32(b)) * xxPrime1
		h = bits.RotateLeft64(h, 23)*xxPrime2 + xxPrime3
		b = b[4:]
	}
	for _, c := range b {
		h ^= uint64(c) * xxPrime5
		h = bits.RotateLeft64(h, 11) * xxPrime1
	}
	h ^= h >> 33
	h *= xxPrime2
	h ^= h >> 29
	h *= xxPrime3
	h ^= h >> 32
	return h
}
