package snapshot

// The state structs of a checkpoint. Their field names are the JSON keys
// of format version 3 and, where they match, the gob field names of
// version 2 (legacy.go), so renaming one is a format change (doc.go).
// The x86 structs mirror KVM's (Documentation/virt/kvm/api.rst), minus
// padding, so internal/vmm converts them field by field.

import "github.com/samsara-vmm/samsara/internal/devices"

// Meta is everything in a checkpoint but guest RAM.
type Meta struct {
	CPUs     int    // vCPUs; len(VCPUs) and len(LAPICs)
	Mem      uint64 // guest RAM in bytes, a multiple of 4096
	Cmdline  string // the guest kernel command line it was booted with
	HasDisk  bool   // the machine had a virtio-blk disk (--vm)
	GuestNow int64  // the guest clock, ns
	VCPUs    []VCPU // architectural state, by vCPU index
	// The device states: internal/devices' own snapshot structs.
	LAPICs  []devices.LAPICState  // by vCPU index
	IOAPIC  devices.IOAPICState   // the IOAPIC
	PIT     devices.PITState      // the 8254
	UART    devices.UARTState     // COM1
	RTC     devices.RTCState      // the CMOS clock
	PIC     devices.PICState      // the 8259A pair (masked stubs)
	Virtio  *devices.VirtioState  // virtio-blk, when HasDisk
	Overlay *devices.OverlayState // the disk's copy-on-write overlay, if any
	// Marks: kernel addresses for the parallel recorder; zero in
	// checkpoints saved before they existed.
	Marks Marks
	// Spins: the kernel's spin functions for the serialized recorder's
	// spin checks; none in older checkpoints.
	Spins []Range
}

// VCPU is one vCPU's architectural state.
type VCPU struct {
	Regs  Regs  // general-purpose registers (KVM_GET_REGS)
	Sregs Sregs // segments, descriptor tables, control registers (KVM_GET_SREGS)
	FPU   FPU   // legacy FPU/SSE state (KVM_GET_FPU), used when Xsave is empty
	// Xsave is the whole XSAVE area (KVM_GET_XSAVE, struct kvm_xsave),
	// XsaveSize bytes, or empty in checkpoints without it: FPU alone does
	// not round-trip on these hosts (internal/vmm, kvmXsave).
	Xsave  []byte
	MSRs   map[uint32]uint64 // MSR index → value, those KVM_GET_SREGS does not cover
	Events Events            // pending exceptions, interrupts, NMI, SMI (KVM_GET_VCPU_EVENTS)
	State  RunState          // the run loop's state
}

// XsaveSize is the length of struct kvm_xsave (4 KiB).
const XsaveSize = 4096

// RunState is a vCPU run loop's state (its multiprocessor state). The
// values are part of the file format.
type RunState int

const (
	WaitSIPI RunState = 0 // an application processor before its startup IPI
	Running  RunState = 1 // enters the guest
	Halted   RunState = 2 // HLT with interrupts enabled, waits for one
	Dead     RunState = 3 // HLT with interrupts disabled
)

// Regs is struct kvm_regs.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64 // general-purpose registers
	R8, R9, R10, R11, R12, R13, R14, R15   uint64 // general-purpose registers
	RIP, RFLAGS                            uint64 // instruction pointer, flags
}

// Segment is struct kvm_segment: a segment register's hidden part.
type Segment struct {
	Base     uint64 // base address
	Limit    uint32 // limit, in bytes
	Selector uint16 // the visible selector
	Typ      uint8  // type field (4 bits); "Typ" as in format version 2
	Present  uint8  // P
	DPL      uint8  // descriptor privilege level
	DB       uint8  // D/B: default operand size
	S        uint8  // code/data (1) or system (0) segment
	L        uint8  // 64-bit code segment
	G        uint8  // granularity
	AVL      uint8  // available bit
	Unusable uint8  // KVM's "unusable" flag
}

// Descriptor is struct kvm_dtable: the GDT or IDT register.
type Descriptor struct {
	Base  uint64 // linear base address
	Limit uint16 // limit, in bytes
}

// Sregs is struct kvm_sregs.
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT Segment    // segment registers
	GDT, IDT                        Descriptor // descriptor table registers
	CR0, CR2, CR3, CR4, CR8         uint64     // control registers
	EFER                            uint64     // extended feature enable MSR
	ApicBase                        uint64     // IA32_APIC_BASE
	// InterruptBitmap: the pending external interrupt, one bit per vector
	// (KVM reports at most one).
	InterruptBitmap [4]uint64
}

// FPU is struct kvm_fpu (x86).
type FPU struct {
	FPR        [8][16]uint8  // x87 registers ST0-ST7, 80 bits each in 16 bytes
	FCW        uint16        // x87 control word
	FSW        uint16        // x87 status word
	FTWX       uint8         // abridged tag word
	LastOpcode uint16        // last x87 opcode
	LastIP     uint64        // last x87 instruction pointer
	LastDP     uint64        // last x87 data pointer
	XMM        [16][16]uint8 // XMM0-XMM15
	MXCSR      uint32        // SSE control and status
}

// Events is struct kvm_vcpu_events.
type Events struct {
	Exception           Exception // a pending or injected exception
	Interrupt           Interrupt // an injected external interrupt
	NMI                 NMI       // NMI state
	SipiVector          uint32    // the vector of a pending SIPI
	Flags               uint32    // KVM_VCPUEVENT_VALID_* bits
	SMI                 SMI       // SMM state
	TripleFault         uint8     // a triple fault is pending
	ExceptionHasPayload uint8     // ExceptionPayload is valid
	ExceptionPayload    uint64    // CR2 or DR6 payload of the exception
}

// Exception is kvm_vcpu_events.exception.
type Exception struct {
	Inject       uint8  // being injected
	Nr           uint8  // vector
	HadErrorCode uint8  // ErrorCode is valid
	Pending      uint8  // pending, not yet injected
	ErrorCode    uint32 // the error code
}

// Interrupt is kvm_vcpu_events.interrupt.
type Interrupt struct {
	Inject uint8 // being injected
	Nr     uint8 // vector
	Soft   uint8 // software interrupt
	Shadow uint8 // interrupt shadow (STI/MOV SS) bits
}

// NMI is kvm_vcpu_events.nmi.
type NMI struct {
	Inject  uint8 // being injected
	Pending uint8 // pending
	Masked  uint8 // NMIs blocked
}

// SMI is kvm_vcpu_events.smi.
type SMI struct {
	SMM          uint8 // in system management mode
	Pending      uint8 // an SMI is pending
	SMMInsideNMI uint8 // entered SMM from an NMI handler
	LatchedInit  uint8 // an INIT arrived in SMM
}

// Marks are the kernel addresses the parallel recorder ends chunks at
// (internal/chunk.Marks).
type Marks struct {
	ReturnToUser uint64 // the kernel's return to user mode
	PageFault    uint64 // the page-fault entry
}

// Range is a guest kernel function's code, [Start, End).
type Range struct {
	Start, End uint64 // guest virtual addresses
}

// check reports an *Error if m is not a machine a checkpoint can hold;
// Read calls it before alloc, so alloc can trust Mem and the counts.
func (m *Meta) check() error {
	switch {
	case m.CPUs < 1 || m.CPUs > MaxVCPUs:
		return bad(ErrMalformed, "%d vCPUs (1 to %d)", m.CPUs, MaxVCPUs)
	case len(m.VCPUs) != m.CPUs || len(m.LAPICs) != m.CPUs:
		return bad(ErrMalformed, "%d vCPU and %d LAPIC states for %d vCPUs", len(m.VCPUs), len(m.LAPICs), m.CPUs)
	case m.Mem%pageSize != 0:
		return bad(ErrMalformed, "guest memory of %d bytes, not whole pages", m.Mem)
	case m.Mem > MaxMemBytes:
		return bad(ErrTooLarge, "guest memory of %d bytes (at most %d)", m.Mem, uint64(MaxMemBytes))
	}
	for i, v := range m.VCPUs {
		if len(v.Xsave) != 0 && len(v.Xsave) != XsaveSize {
			return bad(ErrMalformed, "vCPU %d: XSAVE area of %d bytes, not %d", i, len(v.Xsave), XsaveSize)
		}
		if v.State < WaitSIPI || v.State > Dead {
			return bad(ErrMalformed, "vCPU %d: run state %d", i, v.State)
		}
	}
	return nil
}
