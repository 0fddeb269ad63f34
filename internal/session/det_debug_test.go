package session

import (
	"fmt"
	"strings"
	"testing"
)

// TestChunkEndRoundTrip: an "e" line written by the recorder reads back
// as the same end, and a replayed end that differs is named by register
// and by injected vector.
func TestChunkEndRoundTrip(t *testing.T) {
	want := chunkEnd{vec: 0x21, ok: true, exit: "MMIO read 0xfee00390 data 00100000"}
	for i := range want.regs {
		want.regs[i] = uint64(i) * 0x1001
	}
	var b strings.Builder
	fmt.Fprintf(&b, "e %d %d", 19662, want.vec)
	for _, r := range want.regs {
		fmt.Fprintf(&b, " %x", r)
	}
	fmt.Fprintf(&b, " | %s", want.exit)
	seq, got, ok := parseChunkEnd(b.String())
	if !ok || seq != 19662 || got != want {
		t.Fatalf("parseChunkEnd(%q) = %d, %+v, %v; want 19662, %+v", b.String(), seq, got, ok, want)
	}
	if d := diffChunkEnd(want, got); d != "" {
		t.Errorf("diff of equal ends = %q", d)
	}
	got.vec, got.regs[4], got.exit = 0xec, 7, "MMIO read 0xfee00390 data 00200000"
	d := diffChunkEnd(want, got)
	for _, s := range []string{"injected vector 33, replayed 236", "rsi 0x4004, replayed 0x7", `exit "MMIO read 0xfee00390 data 00100000", replayed "MMIO read 0xfee00390 data 00200000"`} {
		if !strings.Contains(d, s) {
			t.Errorf("diff %q does not say %q", d, s)
		}
	}
	if _, _, ok := parseChunkEnd("12 34 abc"); ok {
		t.Error("a page-hash line parsed as a chunk end")
	}
}
