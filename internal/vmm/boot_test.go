package vmm

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"github.com/samsara-vmm/samsara/tests/testenv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWriteBootParams(t *testing.T) {
	mem := make([]byte, 64<<20)
	initrd := []byte("070701 fake cpio")
	if err := writeBootParams(mem, "console=ttyS0 quiet", initrd, 20<<20); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	bp := mem[bootParamsAddr:]
	if got := le.Uint16(bp[bpBootFlag:]); got != 0xAA55 {
		t.Errorf("boot_flag %#x", got)
	}
	if got := string(bp[bpHeader : bpHeader+4]); got != "HdrS" {
		t.Errorf("header %q", got)
	}
	ptr := le.Uint32(bp[bpCmdLinePtr:])
	if got := string(mem[ptr : ptr+19]); got != "console=ttyS0 quiet" || mem[ptr+19] != 0 {
		t.Errorf("cmdline %q", got)
	}
	addr, size := le.Uint32(bp[bpRamdiskImage:]), le.Uint32(bp[bpRamdiskSize:])
	if size != uint32(len(initrd)) || addr%4096 != 0 || uint64(addr)+uint64(size) > uint64(len(mem)) || string(mem[addr:addr+size]) != string(initrd) {
		t.Errorf("initrd at %#x size %d", addr, size)
	}
	if n := bp[bpE820Entries]; n != 3 {
		t.Fatalf("%d e820 entries", n)
	}
	// The RAM entries must not overlap the MP table or the legacy hole.
	for i := 0; i < 3; i++ {
		e := bp[bpE820Table+20*i:]
		a, s, typ := le.Uint64(e), le.Uint64(e[8:]), le.Uint32(e[16:])
		if typ == e820RAM && a < highMemStart && a+s > mpTableAddr {
			t.Errorf("RAM entry %#x+%#x overlaps the MP table", a, s)
		}
		if typ == e820RAM && a >= highMemStart && a+s != uint64(len(mem)) {
			t.Errorf("high RAM ends at %#x, want %#x", a+s, len(mem))
		}
	}
}

func TestWriteBootParamsErrors(t *testing.T) {
	mem := make([]byte, 64<<20)
	if err := writeBootParams(mem, strings.Repeat("x", cmdlineMax), nil, 0); err == nil {
		t.Error("over-long command line accepted")
	}
	if err := writeBootParams(mem, "", make([]byte, 60<<20), 20<<20); err == nil {
		t.Error("initrd overlapping the kernel accepted")
	}
}

func TestLoadKernelRejectsNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(p, []byte("MZ\x00\x00 not an elf"), 0o644)
	_, err := loadKernel(make([]byte, 64<<20), p)
	if !errors.Is(err, ErrNotKernel) {
		t.Fatalf("got %v, want ErrNotKernel", err)
	}
	// An x86-64 ELF that is not an executable: this test binary with its
	// e_type made ET_DYN (a shared object or PIE, as Debian's /bin/true;
	// the host VM's /bin/true is a static busybox, an ET_EXEC).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elf, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(elf[16:], 3) // e_type = ET_DYN
	dyn := filepath.Join(t.TempDir(), "dyn.elf")
	if err := os.WriteFile(dyn, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKernel(make([]byte, 64<<20), dyn); !errors.Is(err, ErrNotKernel) {
		t.Fatalf("ET_DYN ELF: got %v, want ErrNotKernel", err)
	}
}

func TestIdentityMap(t *testing.T) {
	mem := make([]byte, 1<<20)
	writeIdentityMap(mem)
	le := binary.LittleEndian
	// Walk the tables for a few addresses: each must map to itself.
	for _, va := range []uint64{0, 0x1000000, 0x7fffffff, 0xfee00000, 0xffffffff} {
		pml4e := le.Uint64(mem[pml4Addr+8*((va>>39)&511):])
		pdpte := le.Uint64(mem[(pml4e&^0xfff)+8*((va>>30)&511):])
		pde := le.Uint64(mem[(pdpte&^0xfff)+8*((va>>21)&511):])
		if pde&ptePS == 0 || pde&ptePresent == 0 {
			t.Fatalf("%#x: PDE %#x is not a present 2 MiB page", va, pde)
		}
		if pa := pde&^0x1fffff | va&0x1fffff; pa != va {
			t.Errorf("%#x maps to %#x", va, pa)
		}
	}
}

func TestControlPage(t *testing.T) {
	var got []string
	c := &controlPage{command: encodeCommand([]string{"threads2", "100"}), hooks: recordHooks{&got}}
	buf := make([]byte, 8)
	c.read(controlCommand, buf)
	if string(buf) != "threads2" {
		t.Errorf("command bytes %q", buf)
	}
	c.read(controlCommand+9, buf[:5])
	if string(buf[:5]) != "100\x00\x00" {
		t.Errorf("second argument %q", buf[:5])
	}
	c.read(0, buf[:2])
	if buf[0] != 0 || buf[1] != 0 {
		t.Error("offset 0 must read as zero (no option-ROM signature)")
	}
	c.read(controlCommandLen, buf[:4])
	if n := binary.LittleEndian.Uint32(buf[:4]); n != uint32(len("threads2\x00100\x00\x00")) {
		t.Errorf("command length reads %d, want 14", n)
	}
	c.read(controlCommandLen+1, buf[:1])
	if buf[0] != 0 {
		t.Errorf("second byte of the command length reads %d, want 0", buf[0])
	}
	c.write(1, controlCheckpoint, []byte{1})
	c.write(0, controlPowerOff, []byte{3})
	if strings.Join(got, ",") != "ckpt1,off3" {
		t.Errorf("hooks called: %v", got)
	}
}

type recordHooks struct{ got *[]string }

func (r recordHooks) powerOff(status int) { *r.got = append(*r.got, "off"+string(rune('0'+status))) }
func (r recordHooks) checkpointRequested(cpu int) {
	*r.got = append(*r.got, "ckpt"+string(rune('0'+cpu)))
}

func TestGuestCmdlineHidesFeatures(t *testing.T) {
	s := GuestCmdline(true, "pvm")
	for _, want := range []string{"clearcpuid=4,", "noxsave", "virtio_mmio.device=4K@0xd0000000:5", "lpj="} {
		if !strings.Contains(s, want) {
			t.Errorf("command line lacks %q: %s", want, s)
		}
	}
	if strings.Contains(GuestCmdline(false, "pvm"), "virtio_mmio") {
		t.Error("virtio device on the command line without a disk")
	}
	if strings.Contains(s, "samsara_yield") {
		t.Errorf("PVM command line has the yield port (its kernel is counted exactly): %s", s)
	}
	for _, p := range []string{"svm", "vmx"} {
		if !strings.Contains(GuestCmdline(false, p), fmt.Sprintf("samsara_yield=%#x", YieldPort)) {
			t.Errorf("%s command line lacks the yield port: %s", p, GuestCmdline(false, p))
		}
	}
}

func TestCPUIDPolicy(t *testing.T) {
	tab := &kvmsys.CPUIDTable{Nent: 3}
	tab.Entries[0].Function, tab.Entries[0].Ecx, tab.Entries[0].Edx = 1, 0xFFFFFFFF, 0xFFFFFFFF
	tab.Entries[1].Function, tab.Entries[1].Ebx = 7, 0xFFFFFFFF
	tab.Entries[2].Function = 0x80000008
	applyCPUIDPolicy(tab, 3)
	if tab.Entries[0].Edx&(1<<4) != 0 || tab.Entries[0].Ecx&(1<<30) != 0 || tab.Entries[0].Ecx&(1<<26) != 0 {
		t.Error("TSC, RDRAND or XSAVE still visible in leaf 1")
	}
	if tab.Entries[0].Ebx>>24 != 3 {
		t.Errorf("APIC ID %d, want 3", tab.Entries[0].Ebx>>24)
	}
	if tab.Entries[1].Ebx&(1<<18) != 0 || tab.Entries[1].Ebx&(1<<20) != 0 {
		t.Error("RDSEED or SMAP still visible in leaf 7")
	}
	if tab.Entries[2].Ebx&xsaveErrPtrBit == 0 {
		t.Error("XSAVEERPTR not set")
	}
}

// TestKernelMarks: the parallel recorder's privilege-change addresses come
// from the reference vmlinux's symbols (they match System.map), and an ELF
// without those symbols yields none (privilege-change chunk ends off).
func TestKernelMarks(t *testing.T) {
	build := testenv.BuildDir()
	if build == "" {
		t.Skip("SAMSARA_BUILD is not set (make test sets it): no reference kernel to read")
	}
	f, err := elf.Open(filepath.Join(build, "vmlinux"))
	if err != nil {
		t.Skipf("no reference kernel: %v", err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("reference kernel symbols: %v", err)
	}
	got := findKernelMarks(syms)
	sysmap, err := os.ReadFile(filepath.Join(build, "System.map"))
	if err != nil {
		t.Skipf("no System.map: %v", err)
	}
	want := map[string]uint64{}
	for _, line := range strings.Split(string(sysmap), "\n") {
		if fs := strings.Fields(line); len(fs) == 3 {
			if v, err := strconv.ParseUint(fs[0], 16, 64); err == nil {
				want[fs[2]] = v
			}
		}
	}
	if got.ReturnToUser == 0 || got.ReturnToUser != want["swapgs_restore_regs_and_return_to_usermode"] {
		t.Errorf("ReturnToUser %#x, System.map %#x", got.ReturnToUser, want["swapgs_restore_regs_and_return_to_usermode"])
	}
	if got.PageFault == 0 || got.PageFault != want["asm_exc_page_fault"] {
		t.Errorf("PageFault %#x, System.map %#x", got.PageFault, want["asm_exc_page_fault"])
	}

	spins := findSpinRanges(syms)
	if len(spins) != len(spinFunctions) {
		t.Errorf("spin ranges %+v, want one per %v", spins, spinFunctions)
	}
	for _, r := range spins {
		found := false
		for _, name := range spinFunctions {
			found = found || want[name] == r.Start
		}
		if !found || r.End <= r.Start {
			t.Errorf("spin range %#x-%#x is not one of %v in System.map", r.Start, r.End, spinFunctions)
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	g, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gsyms, _ := g.Symbols()
	if m := findKernelMarks(gsyms); m != (KernelMarks{}) {
		t.Errorf("marks of a non-kernel ELF: %+v, want none", m)
	}
	if r := findSpinRanges(gsyms); len(r) != 0 {
		t.Errorf("spin ranges of a non-kernel ELF: %+v, want none", r)
	}
}
