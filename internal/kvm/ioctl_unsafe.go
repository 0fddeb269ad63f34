package kvm

// Thin KVM ioctl layer. Most ioctls go through gokvm's kvm package; this
// file adds what gokvm lacks or hides:
//
//   - KVM_RUN: gokvm's kvm.Run retries EINTR inside kvm.Ioctl and maps
//     EINTR/EAGAIN to nil, so a kick (signal + immediate_exit) cannot be told
//     apart from a real exit. Run issues the raw syscall and returns
//     ErrInterrupted for EINTR.
//   - KVM_GET_FPU/KVM_SET_FPU (checkpoints), KVM_SET_GUEST_DEBUG,
//     KVM_GET_SUPPORTED_CPUID/KVM_SET_CPUID2 with a fixed-size table, and
//     KVM_GET_STATS_FD: not in gokvm.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// ErrInterrupted is KVM_RUN returning EINTR: a signal (a kick or the Go
// runtime's preemption signal) or immediate_exit. Not a guest exit.
var ErrInterrupted = errors.New("kvm run interrupted")

// KVM ioctl numbers gokvm does not define (linux/kvm.h).
const (
	kvmRunNr          = 0x80
	kvmGetFPUNr       = 0x8c
	kvmSetFPUNr       = 0x8d
	kvmGetSupportedNr = 0x05
	kvmSetCPUID2Nr    = 0x90
	kvmSetGuestDbgNr  = 0x9b
	kvmGetStatsFDNr   = 0xce
	kvmCheckExtNr     = 0x03
)

// Exit reasons (linux/kvm.h KVM_EXIT_*).
const (
	ExitIO            = 2
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
)

// FPU is struct kvm_fpu (x86).
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	Pad1       uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	Pad2       uint32
}

// MaxCPUIDEntries bounds the KVM_GET_SUPPORTED_CPUID table; KVM returns
// E2BIG if the host has more (current hosts report fewer than 100).
const MaxCPUIDEntries = 256

// CPUIDTable is struct kvm_cpuid2 with a fixed-size entry array.
type CPUIDTable struct {
	Nent    uint32
	Padding uint32
	Entries [MaxCPUIDEntries]gokvm.CPUIDEntry2
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, err := gokvm.Ioctl(uintptr(fd), req, uintptr(arg))
	return err
}

// Run enters the guest once. It returns ErrInterrupted on EINTR
// instead of retrying, so the caller sees kicks.
func Run(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), gokvm.IIO(kvmRunNr), 0)
	switch errno {
	case 0:
		return nil
	case unix.EINTR, unix.EAGAIN:
		return ErrInterrupted
	default:
		return fmt.Errorf("KVM_RUN: %w", errno)
	}
}

func GetFPU(fd int) (*FPU, error) {
	f := &FPU{}
	err := ioctlPtr(fd, gokvm.IIOR(kvmGetFPUNr, unsafe.Sizeof(FPU{})), unsafe.Pointer(f))
	return f, err
}

func SetFPU(fd int, f *FPU) error {
	return ioctlPtr(fd, gokvm.IIOW(kvmSetFPUNr, unsafe.Sizeof(FPU{})), unsafe.Pointer(f))
}

func GetSupportedCPUID(kvmFD int) (*CPUIDTable, error) {
	t := &CPUIDTable{Nent: MaxCPUIDEntries}
	err := ioctlPtr(kvmFD, gokvm.IIOWR(kvmGetSupportedNr, 8), unsafe.Pointer(t))
	return t, err
}

func SetCPUID2(fd int, t *CPUIDTable) error {
	return ioctlPtr(fd, gokvm.IIOW(kvmSetCPUID2Nr, 8), unsafe.Pointer(t))
}

// guestDebug is struct kvm_guest_debug (x86).
type guestDebug struct {
	Control  uint32
	Pad      uint32
	DebugReg [8]uint64
}

// KVM_GUESTDBG_* control bits.
const (
	GuestDebugEnable     = 0x1
	GuestDebugSingleStep = 0x2
)

func SetGuestDebug(fd int, control uint32, debugRegs *[8]uint64) error {
	d := guestDebug{Control: control}
	if debugRegs != nil {
		d.DebugReg = *debugRegs
	}
	return ioctlPtr(fd, gokvm.IIOW(kvmSetGuestDbgNr, unsafe.Sizeof(d)), unsafe.Pointer(&d))
}

// CheckExtension returns KVM_CHECK_EXTENSION(cap) on fd (system or VM).
func CheckExtension(fd int, capability int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), gokvm.IIO(kvmCheckExtNr), uintptr(capability))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// GetStatsFD returns the vCPU's binary statistics fd (KVM_GET_STATS_FD).
func GetStatsFD(fd int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), gokvm.IIO(kvmGetStatsFDNr), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// RunDataOf views the mmap'ed struct kvm_run of a vCPU.
func RunDataOf(buf []byte) *gokvm.RunData {
	return (*gokvm.RunData)(unsafe.Pointer(&buf[0]))
}

// MMIOExit decodes a KVM_EXIT_MMIO: data is the access's bytes inside
// the kvm_run page (written back there for a read).
func MMIOExit(r *gokvm.RunData) (addr uint64, data []byte, isWrite bool) {
	// struct { __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write; }
	base := unsafe.Pointer(&r.Data[0])
	addr = r.Data[0]
	n := *(*uint32)(unsafe.Add(base, 16))
	if n > 8 {
		n = 8
	}
	data = unsafe.Slice((*byte)(unsafe.Add(base, 8)), n)
	isWrite = *(*uint8)(unsafe.Add(base, 20)) != 0
	return
}

// DebugExit decodes KVM_EXIT_DEBUG (struct kvm_debug_exit_arch: u32
// exception, u32 pad, u64 pc, u64 dr6, u64 dr7): the exception vector
// (1 = #DB, 3 = #BP), the guest RIP and DR6, whose B0-B3 bits name the
// debug register that fired and BS (bit 14) a single step.
func DebugExit(r *gokvm.RunData) (exception uint32, pc, dr6 uint64) {
	base := unsafe.Pointer(&r.Data[0])
	return *(*uint32)(base), *(*uint64)(unsafe.Add(base, 8)), *(*uint64)(unsafe.Add(base, 16))
}

// IOExit decodes the port I/O exit. data covers count*size bytes inside
// the kvm_run page.
func IOExit(r *gokvm.RunData, page []byte) (out bool, size int, port uint16, count int, data []byte) {
	dir, sz, p, cnt, off := r.IO()
	size, count = int(sz), int(cnt)
	end := int(off) + size*count
	if end > len(page) {
		end = len(page)
	}
	return dir == gokvm.EXITIOOUT, size, uint16(p), count, page[off:end]
}

// InternalError decodes KVM_EXIT_INTERNAL_ERROR: suberror and data words.
func InternalError(r *gokvm.RunData) (suberror uint32, data []uint64) {
	base := unsafe.Pointer(&r.Data[0])
	suberror = *(*uint32)(base)
	n := *(*uint32)(unsafe.Add(base, 4))
	if n > 16 {
		n = 16
	}
	words := unsafe.Slice((*uint64)(unsafe.Add(base, 8)), n)
	return suberror, words
}

// SetImmediateExit sets kvm_run.immediate_exit so that a KVM_RUN entered
// after a kick returns EINTR at once (closes the race between checking for
// work and entering the guest).
//
// The byte is written by a locked compare-and-swap of the aligned word
// that holds it (bytes 0-3 of kvm_run: request_interrupt_window,
// immediate_exit, padding; the other bytes are kept): a full barrier on
// x86. A plain store may sit in the store buffer past the vCPU thread's
// next load of a stop flag (x86 orders a store before a later load only
// with a locked instruction or a fence), and a kick that set the flag and
// this byte in between would then be overwritten by the older clear: the
// vCPU would enter the guest with the kick lost (vmm, VCPU.Enter).
func SetImmediateExit(r *gokvm.RunData, v bool) {
	w := (*uint32)(unsafe.Pointer(r))
	const mask = 0xff << (8 * immediateExitOffset)
	for {
		old := atomic.LoadUint32(w)
		next := old &^ mask
		if v {
			next |= 1 << (8 * immediateExitOffset)
		}
		if atomic.CompareAndSwapUint32(w, old, next) {
			return
		}
	}
}

// immediateExitOffset is kvm_run.immediate_exit's offset (linux
// include/uapi/linux/kvm.h: after the one byte request_interrupt_window);
// TestImmediateExitOffset checks gokvm's RunData agrees.
const immediateExitOffset = 1

// AddressOf returns the address of b's first byte (guest memory base
// for memslots).
func AddressOf(b []byte) unsafe.Pointer {
	return unsafe.Pointer(&b[0])
}

// msrTable is struct kvm_msrs with a fixed-size entry array.
type msrTable struct {
	N       uint32
	Pad     uint32
	Entries [32]struct {
		Index    uint32
		Reserved uint32
		Data     uint64
	}
}

const (
	kvmGetMSRsNr = 0x88
	kvmSetMSRsNr = 0x89
)

// GetMSRs reads the given MSRs (KVM_GET_MSRS returns how many it read).
func GetMSRs(fd int, indices []uint32) (map[uint32]uint64, error) {
	t := &msrTable{N: uint32(len(indices))}
	for i, idx := range indices {
		t.Entries[i].Index = idx
	}
	n, err := gokvm.Ioctl(uintptr(fd), gokvm.IIOWR(kvmGetMSRsNr, 8), uintptr(unsafe.Pointer(t)))
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_MSRS: %w", err)
	}
	out := make(map[uint32]uint64, n)
	for i := 0; i < int(n); i++ {
		out[t.Entries[i].Index] = t.Entries[i].Data
	}
	return out, nil
}

// SetMSRs writes MSRs.
func SetMSRs(fd int, msrs map[uint32]uint64) error {
	t := &msrTable{}
	for idx, val := range msrs {
		t.Entries[t.N].Index, t.Entries[t.N].Data = idx, val
		t.N++
	}
	n, err := gokvm.Ioctl(uintptr(fd), gokvm.IIOW(kvmSetMSRsNr, 8), uintptr(unsafe.Pointer(t)))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	if int(n) != int(t.N) {
		return fmt.Errorf("KVM_SET_MSRS set %d of %d MSRs", n, t.N)
	}
	return nil
}

// kvmInterruptNr is KVM_INTERRUPT, _IOW(KVMIO, 0x86, struct kvm_interrupt).
const kvmInterruptNr = 0x86

// InjectInterrupt queues an external interrupt (userspace irqchip only).
// gokvm's kvm.InjectInterrupt passes the vector as the ioctl argument
// instead of a pointer to struct kvm_interrupt, which KVM rejects with
// EFAULT; this passes the struct.
func InjectInterrupt(fd int, vector uint8) error {
	irq := uint32(vector)
	return ioctlPtr(fd, gokvm.IIOW(kvmInterruptNr, 4), unsafe.Pointer(&irq))
}

// Xsave is struct kvm_xsave: the guest's XSAVE area (legacy FXSAVE
// region, XSAVE header, extended components), 4 KiB. Snapshots use it, not
// KVM_GET_FPU: on these hosts KVM keeps the guest FPU in XSAVES format with
// the init optimisation, and KVM_GET_FPU returned the stale legacy region
// (MXCSR 0, zero XMM registers) while the guest computed with SSE, and
// KVM_SET_FPU did not bring back the SSE state: a squashed chunk's SSE
// exception flags survived into its re-execution and reached memory in the
// guest's next FXSAVE (a final memory digest mismatch replaying canneal).
type Xsave struct {
	Region [1024]uint32
}

// KVM_GET_XSAVE / KVM_SET_XSAVE: _IOR/_IOW(KVMIO, 0xa4/0xa5, struct kvm_xsave).
const (
	kvmGetXsave = 0x9000aea4
	kvmSetXsave = 0x5000aea5
)

func GetXsave(fd int) (*Xsave, error) {
	x := &Xsave{}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetXsave, uintptr(unsafe.Pointer(x))); errno != 0 {
		return nil, fmt.Errorf("KVM_GET_XSAVE: %w", errno)
	}
	return x, nil
}

func SetXsave(fd int, x *Xsave) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmSetXsave, uintptr(unsafe.Pointer(x))); errno != 0 {
		return fmt.Errorf("KVM_SET_XSAVE: %w", errno)
	}
	return nil
}

// kvmGetDirtyLogNr is KVM_GET_DIRTY_LOG, _IOW(KVMIO, 0x42, struct
// kvm_dirty_log) (16 bytes). gokvm's GetDirtyLog drops ENOENT (a slot
// without KVM_MEM_LOG_DIRTY_PAGES), which would read as "nothing written".
const kvmGetDirtyLogNr = 0x42

// GetDirtyLog is KVM_GET_DIRTY_LOG on a VM: bitmap receives one bit per
// page of the memslot written by the guest since the last call, and KVM
// write-protects those pages again.
func GetDirtyLog(vmFD int, slot uint32, bitmap []uint64) error {
	a := struct {
		slot   uint32
		_      uint32
		bitmap uint64
	}{slot: slot, bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vmFD), gokvm.IIOW(kvmGetDirtyLogNr, 16), uintptr(unsafe.Pointer(&a)))
	if errno != 0 {
		return fmt.Errorf("KVM_GET_DIRTY_LOG slot %d: %w", slot, errno)
	}
	return nil
}
