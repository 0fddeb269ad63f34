package vmm

import (
	"fmt"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
)

// CPU feature policy. The guest must not see features that break
// determinism (TSC, RDRAND, RDSEED) or that KVM's instruction emulator
// cannot run under PVM (CX16, XSAVE, POPCNT, SMAP, ...; shared/PLATFORM.md,
// "Instructions the in-kernel emulator cannot run").
//
// Under PVM, KVM_SET_CPUID2 is mostly ignored for feature bits (the guest
// reads the host's leaf 1 ECX/EDX and leaf 7), so the same policy is also
// expressed on the kernel command line (clearcpuid=, see GuestCmdline). On
// hardware VMX/SVM hosts KVM_SET_CPUID2 is honoured and this table is the
// policy. Leaf 0x80000008 EBX does follow KVM_SET_CPUID2 under PVM: there
// we make XSAVEERPTR visible so Linux does not patch in the AMD FXSAVE-leak
// workaround (fnclex; emms; fild), which the emulator cannot run.

// clearedFeature is one CPUID bit hidden from the guest.
type clearedFeature struct {
	name        string
	leaf, index uint32
	reg         byte // 'b', 'c' or 'd'
	bit         uint
	// linuxNum is Linux's feature number (word*32+bit) for clearcpuid=,
	// or -1 when the kernel has its own switch (noxsave, nox2apic).
	linuxNum int
}

var hiddenFeatures = []clearedFeature{
	{"tsc", 1, 0, 'd', 4, 4},               // RDTSC is never seen by userspace KVM
	{"mwait", 1, 0, 'c', 3, 131},           // idle must HLT (exits); MWAIT would spin in the guest
	{"cx16", 1, 0, 'c', 13, 141},           // lock cmpxchg16b: emulator fails
	{"pcid", 1, 0, 'c', 17, 145},           // INVPCID/PCID paths untested under the emulator
	{"x2apic", 1, 0, 'c', 21, 149},         // the userspace LAPIC is xAPIC (MMIO) only
	{"popcnt", 1, 0, 'c', 23, 151},         // emulator fails on popcnt
	{"tsc-deadline", 1, 0, 'c', 24, 152},   // deadline timer is an MSR backed by the TSC
	{"xsave", 1, 0, 'c', 26, 154},          // xrstor64: emulator fails (also noxsave)
	{"avx", 1, 0, 'c', 28, 156},            // no XSAVE, so no AVX state
	{"rdrand", 1, 0, 'c', 30, 158},         // non-deterministic, not interceptable
	{"fsgsbase", 7, 0, 'b', 0, 288},        // wrfsbase etc. in CPL0 paths
	{"avx2", 7, 0, 'b', 5, 293},            // no XSAVE, so no AVX state
	{"smep", 7, 0, 'b', 7, 295},            // CR4 bits the emulator mishandles
	{"invpcid", 7, 0, 'b', 10, 298},        // see pcid
	{"rdseed", 7, 0, 'b', 18, 306},         // non-deterministic, not interceptable
	{"smap", 7, 0, 'b', 20, 308},           // clac/stac: emulator fails
	{"rdtscp", 0x80000001, 0, 'd', 27, 59}, // reads the TSC (word 1, bit 27)
}

// xsaveErrPtrBit is CPUID 0x80000008 EBX[2] (XSAVEERPTR / "FXSAVE leak
// fixed"); see the file comment.
const xsaveErrPtrBit = 1 << 2

// applyCPUIDPolicy edits a KVM_GET_SUPPORTED_CPUID table for vCPU apicID.
func applyCPUIDPolicy(t *kvmsys.CPUIDTable, apicID int) {
	for i := 0; i < int(t.Nent); i++ {
		e := &t.Entries[i]
		for _, f := range hiddenFeatures {
			if e.Function != f.leaf || e.Index != f.index {
				continue
			}
			mask := ^uint32(1 << f.bit)
			switch f.reg {
			case 'b':
				e.Ebx &= mask
			case 'c':
				e.Ecx &= mask
			case 'd':
				e.Edx &= mask
			}
		}
		switch e.Function {
		case 1:
			// EBX[31:24] initial APIC ID; ECX[27] OSXSAVE follows XSAVE.
			e.Ebx = e.Ebx&0x00FFFFFF | uint32(apicID)<<24
			e.Ecx &^= 1 << 27
		case 0x80000008:
			e.Ebx |= xsaveErrPtrBit
		}
	}
}

// clearcpuidArg is the clearcpuid= value for the kernel command line.
func clearcpuidArg() string {
	s := ""
	for i, f := range hiddenFeatures {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(f.linuxNum)
	}
	return s
}
