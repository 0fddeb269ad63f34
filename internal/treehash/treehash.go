// Package treehash is the digest samsara hashes large inputs with: the
// checkpoint (internal/snapshot, since its format version 2), the final
// guest-memory digest of a recording or replay (internal/vmm, digest), and
// the files a recording header names (internal/log, HashFile).
//
// SHA-256 over hundreds of MiB costs tens of seconds where samsara itself
// runs under QEMU TCG (the emulated SVM host, PLATFORM.md): measured under
// qemu-x86_64 -cpu max, Go's SHA-256 hashes 13-35 MB/s, XXH64 about
// 1100 MB/s (natively 1.3 GB/s against 5.8 GB/s); inside the host the
// SHA-256 memory digest of a 256 MiB guest took 22-23 s of every record
// and replay. So the input is hashed as a two-level tree: it is cut into
// 1 MiB pieces at fixed offsets, each piece is hashed with XXH64 seeded
// with its index (github.com/cespare/xxhash/v2), and the digest is the
// SHA-256 of the pieces' XXH64 values (8 bytes each, little-endian): 8
// bytes of SHA-256 input per MiB. Any change changes a piece's XXH64 with
// probability 1-2^-64, so damage and divergence are detected; it is no
// defence against a collision crafted on purpose, which neither a
// checkpoint (the user's own file) nor a replay's self-check needs.
package treehash

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"github.com/cespare/xxhash/v2"
)

// PieceSize is the length of one XXH64 piece of the tree.
const PieceSize = 1 << 20

// Hasher computes the tree digest of everything written to it.
type Hasher struct {
	top   hash.Hash      // SHA-256 of the finished pieces' XXH64
	piece *xxhash.Digest // the current piece, seeded with its index
	index uint64         // the current piece's index
	n     int            // bytes in the current piece
}

// New returns an empty Hasher.
func New() *Hasher {
	return &Hasher{top: sha256.New(), piece: xxhash.NewWithSeed(0)}
}

// Write adds b; it never fails (it is an io.Writer).
func (h *Hasher) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		k := min(len(b), PieceSize-h.n)
		h.piece.Write(b[:k])
		h.n += k
		b = b[k:]
		if h.n == PieceSize {
			h.endPiece()
		}
	}
	return total, nil
}

func (h *Hasher) endPiece() {
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], h.piece.Sum64())
	h.top.Write(v[:])
	h.index++
	h.n = 0
	h.piece.ResetWithSeed(h.index)
}

// Sum returns the digest; the hasher must not be used afterwards.
func (h *Hasher) Sum() [32]byte {
	if h.n > 0 {
		h.endPiece()
	}
	var d [32]byte
	h.top.Sum(d[:0])
	return d
}

// Bytes returns the tree digest of b.
func Bytes(b []byte) [32]byte {
	h := New()
	h.Write(b)
	return h.Sum()
}
