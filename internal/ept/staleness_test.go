package ept

// Page-table staleness under one KVM VM per vCPU: when canonical memory of
// a guest page-table page changes from outside the VM (another vCPU's
// Commit writes it through the memfd), when does this VM's vCPU see the
// new translation? Under shadow paging (PVM) KVM caches translations in
// shadow page tables that it keeps coherent by write-protecting the guest
// page-table pages in *its own* VM; a write through another mapping of the
// memfd goes around that.

import (
	"encoding/binary"
	"testing"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/kvmtest"
)

// Code for the staleness test.
var (
	// userRead at kvmtest.CodeAddr: "mov rax, [rsi]; out 0x80, al".
	userRead = []byte{0x48, 0x8b, 0x06, 0xe6, 0x80}
	// toUser: the iretq frame to userRead at CPL3 (SS 0x23, RSP stackTop,
	// RFLAGS IOPL=3, CS 0x1b, RIP CodeAddr), then iretq:
	//	push 0x23; push 0x8000; push 0x3002; push 0x1b; push 0x10000; iretq
	toUser = []byte{0x6a, 0x23, 0x68, 0x00, 0x80, 0x00, 0x00, 0x68, 0x02, 0x30, 0x00, 0x00,
		0x6a, 0x1b, 0x68, 0x00, 0x00, 0x01, 0x00, 0x48, 0xcf}
	// reloadCR3: "mov rbx, cr3; mov cr3, rbx" (flushes the guest TLB).
	reloadCR3 = []byte{0x0f, 0x20, 0xdb, 0x0f, 0x22, 0xdb}
	// invlpgRSI: "invlpg [rsi]".
	invlpgRSI = []byte{0x0f, 0x01, 0x3e}
)

// Entry points of the CPL0 trampolines to userRead.
const (
	entryPlain  = kvmtest.CodeAddr + 0x100 // iretq only
	entryCR3    = kvmtest.CodeAddr + 0x200 // CR3 reload, iretq
	entryInvlpg = kvmtest.CodeAddr + 0x300 // invlpg [rsi], iretq
)

// GDT entries: null, kernel code64, kernel data, user code64 (DPL3), user
// data (DPL3); accessed bits preset so the CPU does not write them.
var gdt = []uint64{0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00affb000000ffff, 0x00cff3000000ffff}

// Data pages the test PTE points to.
const oldTarget, newTarget = 0x21, 0x22

// setPTE points VA accessVA at page target, with accessed and dirty preset
// so the CPU never writes the page-table page (it then stays the shared
// page-cache page in the view, and any change seen is KVM's doing).
func setPTE(canon []byte, target uint64) {
	binary.LittleEndian.PutUint64(canon[ptAddr:], target*PageSize|kvmtest.PTEPresent|kvmtest.PTEWritable|kvmtest.PTEUser|kvmtest.PTEAccessed|kvmtest.PTEDirty)
}

func fillStaleness(canon []byte) {
	fillCanonical(canon, userRead)
	copy(canon[entryPlain:], toUser)
	copy(canon[entryCR3:], append(append([]byte{}, reloadCR3...), toUser...))
	copy(canon[entryInvlpg:], append(append([]byte{}, invlpgRSI...), toUser...))
	for i, d := range gdt {
		binary.LittleEndian.PutUint64(canon[gdtAddr+8*i:], d)
	}
	// Preset accessed/dirty everywhere on the walk to accessVA.
	ad := uint64(kvmtest.PTEAccessed | kvmtest.PTEDirty)
	for _, a := range []int{kvmtest.PML4Addr, kvmtest.PDPTAddr} {
		binary.LittleEndian.PutUint64(canon[a:], binary.LittleEndian.Uint64(canon[a:])|kvmtest.PTEAccessed)
	}
	binary.LittleEndian.PutUint64(canon[kvmtest.PDAddr:], binary.LittleEndian.Uint64(canon[kvmtest.PDAddr:])|ad)
	binary.LittleEndian.PutUint64(canon[kvmtest.PDAddr+8:], ptAddr|kvmtest.PTEPresent|kvmtest.PTEWritable|kvmtest.PTEUser|kvmtest.PTEAccessed)
	setPTE(canon, oldTarget)
}

// toCPL0 loads CPL0 segments and the test GDT with KVM_SET_SREGS.
func toCPL0(t testing.TB, vm *kvmtest.VM) {
	t.Helper()
	s, err := kvm.GetSregs(uintptr(vm.VCPUFD))
	if err != nil {
		t.Fatalf("KVM_GET_SREGS: %v", err)
	}
	s.GDT = kvm.Descriptor{Base: gdtAddr, Limit: uint16(8*len(gdt) - 1)}
	s.CS = kvm.Segment{Limit: 0xffffffff, Selector: 1 << 3, Typ: 11, Present: 1, S: 1, L: 1, G: 1}
	data := kvm.Segment{Limit: 0xffffffff, Selector: 2 << 3, Typ: 3, Present: 1, DB: 1, S: 1, G: 1}
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	if err := kvm.SetSregs(uintptr(vm.VCPUFD), s); err != nil {
		t.Fatalf("KVM_SET_SREGS: %v", err)
	}
}

// TestPageTableStaleness measures, for each way of making the vCPU look
// again, whether a CPL3 read through a PTE changed in canonical memory
// after the vCPU used it sees the new target. It logs the table the
// package comment reports; it asserts only what must hold on every host:
// deleting and re-adding the memslot drops all cached translations.
func TestPageTableStaleness(t *testing.T) {
	kvmtest.RequireKVM(t)
	tr := &privateTracker{name: PrivatePagemap, uffdWP: true}
	cases := []struct {
		name string
		// before runs between the host's PTE change and the second read.
		before      func(t *testing.T, m *machine)
		entry       uint64 // CPL0 trampoline, or 0: resume at CPL3 directly
		mustBeFresh bool
	}{
		{"rerun (no flush)", nil, 0, false},
		{"KVM_SET_SREGS + iretq", nil, entryPlain, false},
		{"guest mov cr3 (CPL0)", nil, entryCR3, false},
		{"guest invlpg (CPL0)", nil, entryInvlpg, false},
		{"view MADV_DONTNEED", dontneed, 0, false},
		{"view MADV_DONTNEED + guest mov cr3", dontneed, entryCR3, false},
		{"MADV_DONTNEED of the page-table page only", dontneedPage(ptAddr / PageSize), 0, false},
		{"MADV_DONTNEED of the old target page only", dontneedPage(oldTarget), 0, false},
		{"MADV_DONTNEED of an unrelated page only", dontneedPage(0x30), 0, false},
		{"memslot delete + re-add", readdSlot, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			memfd, canon := newMemfd(t, conformSize)
			fillStaleness(canon)
			m := newMachine(t, tr, memfd, conformSize, false)
			toCPL0(t, m.vm)
			// First read: CPL0 trampoline to CPL3, which reads accessVA.
			m.runTo(t, &kvm.Regs{RIP: entryPlain, RFLAGS: 2, RSP: kvmtest.StackTop, RSI: accessVA})
			if got := m.vm.Regs(t).RAX; got != markerOf(oldTarget) {
				t.Fatalf("first read %#x, want %#x", got, markerOf(oldTarget))
			}
			setPTE(canon, newTarget) // another vCPU's commit, seen from here
			if c.before != nil {
				c.before(t, m)
			}
			regs := &kvm.Regs{RIP: kvmtest.CodeAddr, RFLAGS: rflags, RSP: kvmtest.StackTop, RSI: accessVA}
			if c.entry != 0 {
				toCPL0(t, m.vm)
				regs.RIP, regs.RFLAGS = c.entry, 2
			}
			m.runTo(t, regs)
			got := m.vm.Regs(t).RAX
			fresh := got == markerOf(newTarget)
			if !fresh && got != markerOf(oldTarget) {
				t.Fatalf("second read %#x, neither target", got)
			}
			t.Logf("%-36s new translation seen: %v", c.name, fresh)
			if c.mustBeFresh && !fresh {
				t.Errorf("stale translation after %s", c.name)
			}
		})
	}
}

func dontneed(t *testing.T, m *machine) {
	if err := unix.Madvise(m.view.Mem(), unix.MADV_DONTNEED); err != nil {
		t.Fatalf("madvise: %v", err)
	}
}

// dontneedPage drops one page of the view (mapping it first, so the
// MADV_DONTNEED has something to unmap).
func dontneedPage(p uint64) func(t *testing.T, m *machine) {
	return func(t *testing.T, m *machine) {
		b := m.view.Mem()[p*PageSize : (p+1)*PageSize]
		_ = b[0]
		if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
			t.Fatalf("madvise: %v", err)
		}
	}
}

func readdSlot(t *testing.T, m *machine) {
	if err := setMemoryRegion(m.vm.VMFD, 0, 0, 0, 0, sliceAddr(m.view.Mem())); err != nil {
		t.Fatalf("delete memslot: %v", err)
	}
	if err := m.view.Attach(m.vm.VMFD, 0, 0); err != nil {
		t.Fatalf("re-add memslot: %v", err)
	}
}
