// Package kvmtest is a minimal KVM machine for tests: one vCPU, entered
// directly in 64-bit long mode through KVM_SET_SREGS (no firmware, no GDT in
// memory: KVM takes the segment descriptors from the sregs cache), with the
// low 2 MiB of guest memory identity-mapped by one 2 MiB page, as the C
// probes in shared/probes/ do. It is used by the tests of internal/pmc and
// internal/ept; it is test support, not part of samsara's machine.
package kvmtest

import (
	"encoding/binary"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"os"
	"testing"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Guest physical layout of the test machine.
const (
	MemSize  = 2 << 20 // default guest memory: one 2 MiB page
	PML4Addr = 0x2000  // page-map level 4
	PDPTAddr = 0x3000  // page-directory-pointer table
	PDAddr   = 0x4000  // page directory; entry 0 maps the 2 MiB at 0
	StackTop = 0x8000  // initial RSP (the stack grows down into page 7)
	CodeAddr = 0x10000 // entry point
)

// Page-table entry bits (Intel SDM vol. 3, 4.5).
const (
	PTEPresent  = 1 << 0
	PTEWritable = 1 << 1
	PTEUser     = 1 << 2
	PTEAccessed = 1 << 5
	PTEDirty    = 1 << 6
	PTEHuge     = 1 << 7 // PS: the PD entry maps a 2 MiB page
)

// KVM exit reasons (linux/kvm.h) seen by the tests.
const (
	ExitIO       = 2
	ExitMMIO     = 6
	ExitHLT      = 5
	ExitShutdown = 8
	ExitIntr     = 10
)

// exitReasonOffset is the offset of exit_reason in struct kvm_run (after
// request_interrupt_window, immediate_exit and 6 bytes of padding).
const exitReasonOffset = 8

// kvmRunReq is KVM_RUN, _IO(KVMIO, 0x80).
const kvmRunReq = 0xAE<<8 | 0x80

// RequireKVM skips the test when /dev/kvm cannot be used.
func RequireKVM(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("KVM tests need /dev/kvm: %v", err)
	}
	f.Close()
}

// RequirePVM skips a test of the PVM progress backend where KVM is not
// PVM: only there does KVM's insn_emulation statistic count every guest
// kernel instruction (PVM emulates them all; ../shared/PLATFORM.md). On
// VMX/SVM guest kernel code runs natively and insn_emulation counts only
// what KVM itself emulates (measured in the emulated SVM host: 1 for a
// loop of 2n+2 instructions), so these tests cannot hold there; the
// hardware-virtualization backends are issue 11's.
func RequirePVM(t testing.TB) {
	t.Helper()
	RequireKVM(t)
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		t.Skip("needs PVM (module kvm_pvm): insn_emulation counts guest kernel instructions only under PVM; this host's KVM runs them natively")
	}
}

// WriteIdentityMap writes the page tables PML4[0] -> PDPT[0] -> PD[0] = the
// 2 MiB page at GPA 0 (present, writable, user if user) into mem, which is
// guest physical memory from GPA 0. The accessed and dirty bits are left
// clear: the CPU (under shadow paging, KVM on its behalf) sets them, which
// is a guest write to the page-table pages.
func WriteIdentityMap(mem []byte, user bool) {
	var us uint64
	if user {
		us = PTEUser
	}
	binary.LittleEndian.PutUint64(mem[PML4Addr:], PDPTAddr|PTEPresent|PTEWritable|us)
	binary.LittleEndian.PutUint64(mem[PDPTAddr:], PDAddr|PTEPresent|PTEWritable|us)
	binary.LittleEndian.PutUint64(mem[PDAddr:], PTEHuge|PTEPresent|PTEWritable|us)
}

// Config describes a test machine.
type Config struct {
	// User enters the guest at CPL3, else CPL0.
	User bool
	// Code is copied to CodeAddr when the harness allocates the memory.
	Code []byte
	// NoMemory leaves the VM without a memslot: the caller registers its
	// own guest memory (already holding page tables and code) on VMFD.
	NoMemory bool
}

// VM is a one-vCPU VM.
type VM struct {
	KVMFD, VMFD, VCPUFD int
	// Mem is the guest physical memory at GPA 0 (nil with NoMemory).
	Mem []byte
	// RunPage is the vCPU's struct kvm_run.
	RunPage []byte
}

// New builds the machine; it is closed by t.Cleanup.
func New(t testing.TB, c Config) *VM {
	t.Helper()
	RequireKVM(t)
	v := &VM{KVMFD: -1, VMFD: -1, VCPUFD: -1}
	t.Cleanup(v.close)
	var err error
	if v.KVMFD, err = unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		t.Fatalf("open /dev/kvm: %v", err)
	}
	vm, err := kvmsys.CreateVM(v.KVMFD)
	if err != nil {
		t.Fatalf("KVM_CREATE_VM: %v", err)
	}
	v.VMFD = vm
	if !c.NoMemory {
		if v.Mem, err = unix.Mmap(-1, 0, MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
			t.Fatalf("mmap guest memory: %v", err)
		}
		region := kvm.UserspaceMemoryRegion{MemorySize: MemSize, UserspaceAddr: uint64(uintptr(unsafe.Pointer(&v.Mem[0])))}
		if err := kvm.SetUserMemoryRegion(uintptr(vm), &region); err != nil {
			t.Fatalf("KVM_SET_USER_MEMORY_REGION: %v", err)
		}
		WriteIdentityMap(v.Mem, c.User)
		copy(v.Mem[CodeAddr:], c.Code)
	}

	cpu, err := kvm.CreateVCPU(uintptr(vm), 0)
	if err != nil {
		t.Fatalf("KVM_CREATE_VCPU: %v", err)
	}
	v.VCPUFD = int(cpu)
	size, err := kvm.GetVCPUMMmapSize(uintptr(v.KVMFD))
	if err != nil {
		t.Fatalf("KVM_GET_VCPU_MMAP_SIZE: %v", err)
	}
	if v.RunPage, err = unix.Mmap(v.VCPUFD, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.Fatalf("mmap kvm_run: %v", err)
	}

	s, err := kvm.GetSregs(cpu)
	if err != nil {
		t.Fatalf("KVM_GET_SREGS: %v", err)
	}
	s.CR3 = PML4Addr
	s.CR4 = 1 << 5     // PAE
	s.CR0 = 0x80050033 // PG, AM, WP, NE, ET, MP, PE
	s.EFER = 0x500     // LMA, LME
	var rpl uint8
	if c.User {
		rpl = 3
	}
	s.CS = kvm.Segment{Limit: 0xffffffff, Selector: 1<<3 | uint16(rpl), Typ: 11, Present: 1, DPL: rpl, S: 1, L: 1, G: 1}
	data := kvm.Segment{Limit: 0xffffffff, Selector: 2<<3 | uint16(rpl), Typ: 3, Present: 1, DPL: rpl, DB: 1, S: 1, G: 1}
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	if err := kvm.SetSregs(cpu, s); err != nil {
		t.Fatalf("KVM_SET_SREGS: %v", err)
	}
	return v
}

// Run issues KVM_RUN directly and returns its errno.
func (v *VM) Run() error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.VCPUFD), kvmRunReq, 0); e != 0 {
		return e
	}
	return nil
}

// ExitReason is kvm_run.exit_reason of the last KVM_RUN.
func (v *VM) ExitReason() uint32 {
	return binary.LittleEndian.Uint32(v.RunPage[exitReasonOffset:])
}

// SetImmediateExit sets kvm_run.immediate_exit (byte 1): KVM_RUN then
// returns EINTR without entering the guest.
func (v *VM) SetImmediateExit(on bool) {
	if on {
		v.RunPage[1] = 1
	} else {
		v.RunPage[1] = 0
	}
}

// CompletePendingExit completes a pending I/O or MMIO exit with KVM_RUN
// and immediate_exit set, so that a following KVM_SET_REGS is not undone
// when KVM finishes the old instruction on the next entry.
func (v *VM) CompletePendingExit(t testing.TB) {
	t.Helper()
	v.SetImmediateExit(true)
	if err := v.Run(); err != unix.EINTR {
		t.Fatalf("KVM_RUN with immediate_exit: %v, want EINTR", err)
	}
	v.SetImmediateExit(false)
}

// Regs reads the vCPU's registers.
func (v *VM) Regs(t testing.TB) *kvm.Regs {
	t.Helper()
	r, err := kvm.GetRegs(uintptr(v.VCPUFD))
	if err != nil {
		t.Fatalf("KVM_GET_REGS: %v", err)
	}
	return r
}

// SetRegs writes the vCPU's registers.
func (v *VM) SetRegs(t testing.TB, r *kvm.Regs) {
	t.Helper()
	if err := kvm.SetRegs(uintptr(v.VCPUFD), r); err != nil {
		t.Fatalf("KVM_SET_REGS: %v", err)
	}
}

func (v *VM) close() {
	if v.RunPage != nil {
		unix.Munmap(v.RunPage)
	}
	for _, fd := range []int{v.VCPUFD, v.VMFD, v.KVMFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if v.Mem != nil {
		unix.Munmap(v.Mem)
	}
}
