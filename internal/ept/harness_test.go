package ept

// Test harness: canonical guest memory in a memfd, a one-vCPU VM per view
// (internal/kvmtest with the view as its memslot), and a guest that does a
// chosen access pattern and exits.

import (
	"encoding/binary"
	"testing"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/kvmtest"
)

// Guest physical pages of the test layout (kvmtest's, plus a GDT and a
// 4 KiB page table for the page-table staleness test).
const (
	gdtAddr  = 0x1000 // GDT with user segments, for iretq to CPL3
	ptAddr   = 0x5000 // page table of the 2 MiB at VA 0x200000
	accessVA = 0x200000
)

// Guest code at kvmtest.CodeAddr: the access pattern of the conformance
// test, driven by registers, ending with an exit to userspace.
//
//	mov rax, [rsi]   ; read A
//	mov r8, [rdi]    ; read B
//	mov [rdx], rbx   ; write C
//	add [rcx], rbx   ; read+write D
//	out 0x80, al     ; KVM_EXIT_IO (at CPL3 allowed by RFLAGS.IOPL=3)
var accessCode = []byte{0x48, 0x8b, 0x06, 0x4c, 0x8b, 0x07, 0x48, 0x89, 0x1a, 0x48, 0x01, 0x19, 0xe6, 0x80}

// pattern is one chunk's accesses: page indexes.
type pattern struct{ a, b, c, d uint64 }

// rflags: bit 1 is reserved-set; IOPL=3 lets CPL3 code use OUT.
const rflags = 0x3002

// newMemfd makes canonical guest memory of size bytes: a memfd, mapped
// shared for the test to fill and inspect.
func newMemfd(t testing.TB, size int) (int, []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("samsara-ept-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}
	canon, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap canonical: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(canon) })
	return fd, canon
}

// fillCanonical writes the page tables (identity map of the first
// 2 MiB pages of size, user-accessible), the access code and a distinct
// marker in the first 8 bytes of every page.
func fillCanonical(canon []byte, code []byte) {
	for p := 0; p < len(canon)/PageSize; p++ {
		binary.LittleEndian.PutUint64(canon[p*PageSize:], markerOf(uint64(p)))
	}
	kvmtest.WriteIdentityMap(canon, true)
	for j := 1; j < len(canon)>>21; j++ { // one 2 MiB PD entry per 2 MiB
		binary.LittleEndian.PutUint64(canon[kvmtest.PDAddr+8*j:], uint64(j)<<21|kvmtest.PTEHuge|kvmtest.PTEPresent|kvmtest.PTEWritable|kvmtest.PTEUser)
	}
	copy(canon[kvmtest.CodeAddr:], code)
}

// markerOf is the initial content of page p.
func markerOf(p uint64) uint64 { return 0x5a5a000000000000 | p }

func word(b []byte, page uint64) uint64 {
	return binary.LittleEndian.Uint64(b[page*PageSize:])
}

// machine is one vCPU's VM running on one view.
type machine struct {
	vm   *kvmtest.VM
	view View
	user bool
}

// newMachine attaches a new view of memfd to a new VM.
func newMachine(t testing.TB, tr Tracker, memfd int, size uint64, user bool) *machine {
	t.Helper()
	vm := kvmtest.New(t, kvmtest.Config{User: user, NoMemory: true})
	view, err := tr.NewView(memfd, size)
	if err != nil {
		t.Fatalf("%s NewView: %v", tr.Name(), err)
	}
	t.Cleanup(func() { view.Close() })
	if err := view.Attach(vm.VMFD, 0, 0); err != nil {
		t.Fatalf("%s Attach: %v", tr.Name(), err)
	}
	return &machine{vm: vm, view: view, user: user}
}

// runChunk runs one chunk doing p (adding val to D, storing val to C) and
// returns its sets and the guest's RAX (A's first word) and R8 (B's).
func (m *machine) runChunk(t testing.TB, p pattern, val uint64) (Sets, uint64, uint64) {
	t.Helper()
	if err := m.view.Begin(); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	regs := &kvm.Regs{RIP: kvmtest.CodeAddr, RFLAGS: rflags, RSP: kvmtest.StackTop,
		RSI: p.a * PageSize, RDI: p.b * PageSize, RDX: p.c * PageSize, RCX: p.d * PageSize, RBX: val}
	m.runTo(t, regs)
	r := m.vm.Regs(t)
	s, err := m.view.End()
	if err != nil {
		t.Fatalf("End: %v", err)
	}
	return s, r.RAX, r.R8
}

// runTo sets regs and runs the vCPU to its OUT exit, then completes the
// exit (KVM_RUN with immediate_exit) so the next KVM_SET_REGS holds.
func (m *machine) runTo(t testing.TB, regs *kvm.Regs) {
	t.Helper()
	m.vm.SetRegs(t, regs)
	err := m.vm.Run()
	for err == unix.EINTR { // a Go runtime signal (preemption) interrupted the guest: resume
		err = m.vm.Run()
	}
	if err != nil {
		t.Fatalf("KVM_RUN: %v", err)
	}
	if r := m.vm.ExitReason(); r != kvmtest.ExitIO {
		t.Fatalf("exit reason %d, want %d (IO); rip %#x", r, kvmtest.ExitIO, m.vm.Regs(t).RIP)
	}
	m.vm.CompletePendingExit(t)
}

// testTrackers is every backend this host supports, for the tests; an
// unsupported one is skipped with its reason.
func forEachBackend(t *testing.T, f func(t *testing.T, tr Tracker, exact bool)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			kvmtest.RequireKVM(t)
			if err := b.check(); err != nil {
				t.Skipf("backend %s unsupported on this host: %v", b.name, err)
			}
			f(t, b.make(), b.exact)
		})
	}
}
