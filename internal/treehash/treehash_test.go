package treehash

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestSplittingDoesNotMatter(t *testing.T) {
	b := make([]byte, 3*PieceSize+77)
	rand.New(rand.NewSource(2)).Read(b)
	one := Bytes(b)
	many := New()
	for rest, k := b, 1; len(rest) > 0; k = (k*3 + 1) % 1000003 {
		n := min(k%100000, len(rest))
		many.Write(rest[:n])
		rest = rest[n:]
	}
	if one != many.Sum() {
		t.Error("tree digest depends on how the input is split")
	}
}

func TestEveryByteCounts(t *testing.T) {
	b := make([]byte, 2*PieceSize+5)
	base := Bytes(b)
	for _, off := range []int{0, PieceSize - 1, PieceSize, 2*PieceSize + 4} {
		b[off] ^= 1
		if Bytes(b) == base {
			t.Errorf("flipping byte %d left the digest unchanged", off)
		}
		b[off] ^= 1
	}
	// Moving a piece's content to another index changes the digest:
	// pieces are seeded with their index.
	two := make([]byte, 2*PieceSize)
	two[5] = 1
	swapped := make([]byte, 2*PieceSize)
	swapped[PieceSize+5] = 1
	if Bytes(two) == Bytes(swapped) {
		t.Error("swapping two pieces left the digest unchanged")
	}
	// A trailing zero byte is not the same input.
	if Bytes(b) == Bytes(append(b, 0)) {
		t.Error("a trailing zero byte left the digest unchanged")
	}
}

func TestPieceIsSeededXXH64(t *testing.T) {
	// One short piece: the SHA-256 of its XXH64 with seed 0 (little-
	// endian), so another implementation can check a digest.
	in := []byte("samsara")
	var le [8]byte
	binary.LittleEndian.PutUint64(le[:], xxhash.Sum64(in))
	if got, want := Bytes(in), sha256.Sum256(le[:]); got != want {
		t.Errorf("digest %x, want %x", got, want)
	}
}
