package vmm

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// Direct 64-bit boot of an uncompressed ELF vmlinux with the Linux x86
// 64-bit boot protocol (Documentation/x86/boot.rst, "64-bit Boot
// Protocol"): the VMM loads the kernel's PT_LOAD segments at their physical
// addresses, builds boot_params (the "zero page") with the e820 map,
// command line and initrd, sets up long mode with an identity map, and
// starts the BSP at the ELF entry (phys_startup_64) with RSI = &boot_params.
// No BIOS and no real mode: under PVM both are emulated and cost tens of
// seconds (shared/PLATFORM.md).

// Fixed low-memory addresses of the boot structures. They sit in base
// memory below the kernel's load address (16 MiB) and are free for the
// kernel to reuse once it has copied boot_params and the command line.
const (
	gdtAddr        = 0x500
	bootParamsAddr = 0x7000
	bootStackTop   = 0x8ff0
	pml4Addr       = 0x9000
	pdptAddr       = 0xA000
	pdAddr         = 0xB000 // four page directories: 0xB000-0xEFFF map 4 GiB
	cmdlineAddr    = 0x20000
	// cmdlineMax is the 6.1 kernel's COMMAND_LINE_SIZE on x86.
	cmdlineMax = 2048
	// initrdMaxAddr is the protocol's initrd_addr_max default for 64-bit
	// kernels that do not set XLF_CAN_BE_LOADED_ABOVE_4G handling (2 GiB).
	initrdMaxAddr = 0x7fffffff
)

// ErrNotKernel is returned for a kernel file that is not an x86-64 ELF
// executable.
var ErrNotKernel = errors.New("not an x86-64 ELF vmlinux")

// KernelMarks are the guest kernel addresses where the parallel recorder
// ends a chunk at a change of privilege (findKernelMarks); the recorder
// reads them as internal/chunk's Marks, which has the same fields.
type KernelMarks struct {
	// ReturnToUser is the first instruction of the kernel's only path
	// back to user mode.
	ReturnToUser uint64
	// PageFault is the page-fault entry.
	PageFault uint64
}

// loadedKernel is what loadKernel put in guest memory.
type loadedKernel struct {
	entry uint64 // physical entry point (startup_64)
	end   uint64 // first byte after the highest loaded segment
	marks KernelMarks
	spins []KernelRange
}

// findKernelMarks finds, in the ELF symbol table syms, the guest kernel
// addresses where the parallel recorder ends a chunk at a change of
// privilege (internal/chunk); a missing symbol leaves both zero (chunks then end
// only at exits and preemptions). The return path is
// swapgs_restore_regs_and_return_to_usermode, the only path of Linux 6.1
// (x86-64, no PTI) from kernel to user mode: every exception and interrupt
// return to user mode goes through it (arch/x86/entry/entry_64.S), and
// under PVM syscalls do too (patch 0004: they arrive as page faults, at
// asm_exc_page_fault).
func findKernelMarks(syms []elf.Symbol) KernelMarks {
	var k KernelMarks
	for _, s := range syms {
		switch s.Name {
		case "swapgs_restore_regs_and_return_to_usermode":
			k.ReturnToUser = s.Value
		case "asm_exc_page_fault":
			k.PageFault = s.Value
		}
	}
	if k.ReturnToUser == 0 || k.PageFault == 0 {
		return KernelMarks{}
	}
	return k
}

// loadKernel copies the PT_LOAD segments of the ELF file at path into mem.
func loadKernel(mem []byte, path string) (*loadedKernel, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w (%v); pass the uncompressed vmlinux, not a bzImage", path, ErrNotKernel, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("kernel %s: %w (class %v, machine %v, type %v)", path, ErrNotKernel, f.Class, f.Machine, f.Type)
	}
	// A kernel without a symbol table (stripped) just has no marks or
	// spin ranges.
	syms, _ := f.Symbols()
	k := &loadedKernel{entry: f.Entry, marks: findKernelMarks(syms), spins: findSpinRanges(syms)}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Paddr < highMemStart || p.Paddr+p.Memsz > uint64(len(mem)) {
			return nil, fmt.Errorf("kernel segment at %#x+%#x does not fit in %d MiB of guest memory", p.Paddr, p.Memsz, len(mem)>>20)
		}
		if _, err := p.ReadAt(mem[p.Paddr:p.Paddr+p.Filesz], 0); err != nil {
			return nil, fmt.Errorf("read kernel segment: %w", err)
		}
		clear(mem[p.Paddr+p.Filesz : p.Paddr+p.Memsz])
		k.end = max(k.end, p.Paddr+p.Memsz)
	}
	if k.end == 0 {
		return nil, fmt.Errorf("kernel %s: %w (no loadable segments)", path, ErrNotKernel)
	}
	if k.entry < highMemStart || k.entry >= k.end {
		return nil, fmt.Errorf("kernel %s: entry %#x outside its segments: %w", path, k.entry, ErrNotKernel)
	}
	return k, nil
}

// e820 entry types.
const (
	e820RAM      = 1
	e820Reserved = 2
)

type e820Entry struct {
	addr, size uint64
	typ        uint32
}

// e820Map describes guest RAM: base memory up to the MP table, the MP
// table's KiB reserved, the legacy hole (implicitly absent), and RAM from
// 1 MiB up.
func e820Map(memSize uint64) []e820Entry {
	return []e820Entry{
		{0, mpTableAddr, e820RAM},
		{mpTableAddr, lowMemEnd - mpTableAddr, e820Reserved},
		{highMemStart, memSize - highMemStart, e820RAM},
	}
}

// boot_params offsets (arch/x86/include/uapi/asm/bootparam.h).
const (
	bpExtRamdiskImage = 0x0C0
	bpExtRamdiskSize  = 0x0C4
	bpExtCmdLinePtr   = 0x0C8
	bpE820Entries     = 0x1E8
	bpBootFlag        = 0x1FE
	bpHeader          = 0x202
	bpVersion         = 0x206
	bpTypeOfLoader    = 0x210
	bpLoadFlags       = 0x211
	bpRamdiskImage    = 0x218
	bpRamdiskSize     = 0x21C
	bpCmdLinePtr      = 0x228
	bpKernelAlignment = 0x230
	bpCmdlineSize     = 0x238
	bpE820Table       = 0x2D0
)

// writeBootParams fills the zero page, command line and initrd.
func writeBootParams(mem []byte, cmdline string, initrd []byte, kernelEnd uint64) error {
	if len(cmdline)+1 > cmdlineMax {
		return fmt.Errorf("kernel command line is %d bytes, the limit is %d", len(cmdline), cmdlineMax-1)
	}
	bp := mem[bootParamsAddr : bootParamsAddr+4096]
	clear(bp)
	le := binary.LittleEndian
	le.PutUint16(bp[bpBootFlag:], 0xAA55)
	le.PutUint32(bp[bpHeader:], 0x53726448) // "HdrS"
	le.PutUint16(bp[bpVersion:], 0x020F)    // boot protocol 2.15
	bp[bpTypeOfLoader] = 0xFF               // "undefined" loader (boot.rst)
	bp[bpLoadFlags] = 0x01                  // LOADED_HIGH: kernel at 1 MiB+
	le.PutUint32(bp[bpKernelAlignment:], 0x1000000)
	copy(mem[cmdlineAddr:], cmdline)
	mem[cmdlineAddr+len(cmdline)] = 0
	le.PutUint32(bp[bpCmdLinePtr:], cmdlineAddr)
	le.PutUint32(bp[bpCmdlineSize:], uint32(len(cmdline)))
	le.PutUint32(bp[bpExtCmdLinePtr:], 0)

	if len(initrd) > 0 {
		top := min(uint64(len(mem)), initrdMaxAddr+1)
		addr := (top - uint64(len(initrd))) &^ 0xFFF
		if addr < kernelEnd {
			return fmt.Errorf("initrd of %d MiB does not fit above the kernel in %d MiB of guest memory", len(initrd)>>20, len(mem)>>20)
		}
		copy(mem[addr:], initrd)
		le.PutUint32(bp[bpRamdiskImage:], uint32(addr))
		le.PutUint32(bp[bpRamdiskSize:], uint32(len(initrd)))
		le.PutUint32(bp[bpExtRamdiskImage:], uint32(addr>>32))
		le.PutUint32(bp[bpExtRamdiskSize:], uint32(uint64(len(initrd))>>32))
	}

	entries := e820Map(uint64(len(mem)))
	bp[bpE820Entries] = uint8(len(entries))
	for i, e := range entries {
		off := bpE820Table + 20*i
		le.PutUint64(bp[off:], e.addr)
		le.PutUint64(bp[off+8:], e.size)
		le.PutUint32(bp[off+16:], e.typ)
	}
	return nil
}

// Page-table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	ptePS      = 1 << 7 // 2 MiB page in a PD entry
)

// writeIdentityMap maps the low 4 GiB 1:1 with 2 MiB pages, which covers
// the kernel, boot_params and initrd for startup_64 until it switches to
// its own page tables.
func writeIdentityMap(mem []byte) {
	le := binary.LittleEndian
	clear(mem[pml4Addr : pdAddr+4*4096])
	le.PutUint64(mem[pml4Addr:], pdptAddr|ptePresent|pteWrite)
	for i := uint64(0); i < 4; i++ {
		le.PutUint64(mem[pdptAddr+8*i:], (pdAddr+4096*i)|ptePresent|pteWrite)
	}
	for i := uint64(0); i < 4*512; i++ {
		le.PutUint64(mem[pdAddr+8*i:], (i<<21)|ptePresent|pteWrite|ptePS)
	}
}

// GDT selectors used at entry: startup_64 loads its own GDT right away,
// these only need to be valid 64-bit code and data descriptors.
const (
	bootCodeSelector = 0x10
	bootDataSelector = 0x18
)

// writeGDT writes null, null, 64-bit code (0x10), data (0x18), matching
// the selectors of Linux's boot GDT (__BOOT_CS, __BOOT_DS).
func writeGDT(mem []byte) {
	le := binary.LittleEndian
	gdt := []uint64{0, 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF}
	for i, d := range gdt {
		le.PutUint64(mem[gdtAddr+8*i:], d)
	}
}

// readFileLimit reads a whole input file with a clear error.
func readFileLimit(what, path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s %s is a directory", what, path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s %s is %d MiB, more than the %d MiB limit", what, path, st.Size()>>20, limit>>20)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}
