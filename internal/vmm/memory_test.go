package vmm

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHashIntoMatchesMapping: hashing guest memory around the memfd's
// holes gives the digest of the whole mapping, and leaves the holes
// unallocated.
func TestHashIntoMatchesMapping(t *testing.T) {
	g, err := newGuestMemory(minMemBytes)
	if err != nil {
		t.Skipf("no guest memory here: %v", err)
	}
	defer g.close()
	for _, off := range []int{0, 4096 * 3, 1 << 20, len(g.mem) - 4096} {
		g.mem[off+17] = byte(off>>12) | 1
	}
	got := sha256.New()
	if err := g.hashInto(got); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(g.fd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 64*4096 {
		t.Errorf("hashing allocated %d KiB of a memfd with 4 pages written", st.Blocks/2)
	}
	want := sha256.Sum256(g.mem)
	if !bytes.Equal(got.Sum(nil), want[:]) {
		t.Errorf("hashInto %x, hash of the mapping %x", got.Sum(nil), want)
	}
}
