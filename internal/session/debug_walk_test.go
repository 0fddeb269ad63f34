package session

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestTranslate builds page tables by hand: a 4 KiB, a 2 MiB and a 1 GiB
// mapping, and an unmapped address.
func TestTranslate(t *testing.T) {
	mem := make([]byte, 8<<20)
	put := func(table, idx, v uint64) { binary.LittleEndian.PutUint64(mem[table+idx*8:], v) }
	const pml4, pdpt, pd, pt = 0x1000, 0x2000, 0x3000, 0x4000
	// va 0xffff888000000000: PML4 index 273, PDPT index 0.
	put(pml4, 273, pdpt|ptePresent)
	put(pdpt, 0, pd|ptePresent)
	put(pd, 0, pt|ptePresent)
	put(pt, 1, 0x5000|ptePresent)             // 4 KiB page at va +0x1000
	put(pd, 1, 0x200000|ptePresent|ptePS)     // 2 MiB page at va +2 MiB
	put(pdpt, 1, 0x40000000|ptePresent|ptePS) // 1 GiB page at va +1 GiB
	copy(mem[0x5ffe:], "ab")
	copy(mem[0x6000:], "cd")
	base := uint64(0xffff888000000000)
	for _, c := range []struct {
		va, pa uint64
	}{
		{base + 0x1234, 0x5234},
		{base + 0x200000 + 0x12345, 0x212345},
		{base + 1<<30 + 0x123456, 0x40123456},
	} {
		got, err := translate(mem, pml4, c.va)
		if err != nil || got != c.pa {
			t.Errorf("translate(%#x) = %#x, %v; want %#x", c.va, got, err, c.pa)
		}
	}
	var pf *pageFault
	if _, err := translate(mem, pml4, base+0x2000); !errors.As(err, &pf) || pf.Level != 1 {
		t.Errorf("unmapped 4 KiB page: %v", err)
	}
	if _, err := translate(mem, pml4, 0x400000); !errors.As(err, &pf) || pf.Level != 4 {
		t.Errorf("unmapped PML4 entry: %v", err)
	}
	// A read across a page boundary into an unmapped page fails; one
	// inside the mapped page does not.
	if _, err := readVirtual(mem, pml4, base+0x1ffe, 4); err == nil {
		t.Errorf("read into an unmapped page succeeded")
	}
	if b, err := readVirtual(mem, pml4, base+0x1ffe, 2); err != nil || string(b) != "ab" {
		t.Errorf("read at the end of a page: %q, %v", b, err)
	}
}
