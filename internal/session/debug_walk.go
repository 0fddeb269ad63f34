package session

// Guest virtual addresses for the debugger: a walk of the x86-64 4-level
// page tables (Intel SDM vol. 3, 4.5 "4-Level Paging"), done in software
// over guest RAM so that it needs no KVM call and reads exactly what the
// guest would (KVM_TRANSLATE would work too, but only on the vCPU's own
// thread state and without telling a missing page from a bad table).

import (
	"encoding/binary"
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
)

// Page-table entry bits and masks (SDM vol. 3, table 4-15 to 4-20).
const (
	ptePresent = 1 << 0
	ptePS      = 1 << 7 // page size: a 1 GiB page in a PDPTE, 2 MiB in a PDE
	// pteAddrMask is bits 51:12, the physical address of the next table
	// or page (MAXPHYADDR 52 at most).
	pteAddrMask = 0x000ffffffffff000
	// cr3AddrMask is CR3's PML4 address (bits 51:12; the low bits are
	// PCID or PWT/PCD).
	cr3AddrMask = pteAddrMask
)

// pageFault is an address the guest page tables do not map.
type pageFault struct {
	Addr  uint64
	Level int // 4 = PML4 ... 1 = PT
}

func (e *pageFault) Error() string {
	return fmt.Sprintf("guest virtual address %#x is not mapped (no present entry at page-table level %d)", e.Addr, e.Level)
}

// translate maps virtual address va to a guest physical address through
// the page tables at cr3, reading tables from mem (guest RAM, physical
// address = offset).
func translate(mem []byte, cr3, va uint64) (uint64, error) {
	table := cr3 & cr3AddrMask
	for level := 4; level >= 1; level-- {
		// 9 index bits per level above the 12-bit page offset.
		shift := uint(12 + 9*(level-1))
		idx := (va >> shift) & 0x1ff
		off := table + idx*8
		if off+8 > uint64(len(mem)) {
			return 0, fmt.Errorf("guest page table at %#x (level %d) lies outside guest RAM", table, level)
		}
		e := binary.LittleEndian.Uint64(mem[off:])
		if e&ptePresent == 0 {
			return 0, &pageFault{Addr: va, Level: level}
		}
		if level <= 3 && level >= 2 && e&ptePS != 0 {
			// 1 GiB (level 3) or 2 MiB (level 2) page: the rest of the
			// address is the offset into it.
			size := uint64(1) << shift
			return (e & pteAddrMask &^ (size - 1)) | va&(size-1), nil
		}
		table = e & pteAddrMask
	}
	return table | va&0xfff, nil
}

// readVirtual reads n bytes at va, page by page (each page may map
// elsewhere).
func readVirtual(mem []byte, cr3, va uint64, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		pa, err := translate(mem, cr3, va)
		if err != nil {
			return nil, err
		}
		chunk := min(uint64(n-len(out)), 4096-va&0xfff)
		if pa+chunk > uint64(len(mem)) {
			return nil, fmt.Errorf("guest virtual address %#x maps to %#x, outside guest RAM", va, pa)
		}
		out = append(out, mem[pa:pa+chunk]...)
		va += chunk
	}
	return out, nil
}

// interruptHandler is the address of vector vec's handler: the offset of
// its 64-bit IDT gate, 16 bytes each, the offset in bytes 0-1, 6-7 and
// 8-11 (Intel SDM vol. 3, 6.14.1, figure 6-8).
func interruptHandler(mem []byte, sr *kvm.Sregs, vec uint8) (uint64, error) {
	gate, err := readVirtual(mem, sr.CR3, sr.IDT.Base+uint64(vec)*16, 16)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	return uint64(le.Uint16(gate)) | uint64(le.Uint16(gate[6:]))<<16 | uint64(le.Uint32(gate[8:]))<<32, nil
}
