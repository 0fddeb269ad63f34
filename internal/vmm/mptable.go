package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// Intel MultiProcessor Specification 1.4 tables, which tell a guest without
// ACPI how many CPUs there are, where the IOAPIC is and how ISA IRQs reach
// its pins. Linux finds the floating pointer by scanning the last KiB of
// base memory (among other areas), so the VMM places the result at 0x9FC00
// and reserves it in the E820 map.
//
// Layout (MP spec chapter 4), all little-endian:
//
//	base+0   floating pointer (16 bytes): "_MP_", physical address of the
//	         configuration table, length 1 (×16 bytes), spec rev 4,
//	         checksum, feature bytes 0 (a configuration table is present,
//	         no IMCR: the machine is in virtual-wire/symmetric mode)
//	base+16  configuration table header (44 bytes): "PCMP", base table
//	         length, spec rev 4, checksum, OEM id, product id, OEM table
//	         (none), entry count, local APIC address, no extended table
//	base+60  entries, ordered by type as the spec requires: processors (20
//	         bytes each), the ISA bus, the IOAPIC, I/O interrupt
//	         assignments, local interrupt assignments (8 bytes each)

// MPTableMaxSize is the room the VMM gives the tables: the last KiB of base
// memory (0x9FC00-0x9FFFF), which Linux's smp_scan_config searches.
const MPTableMaxSize = 1024

// MPTableMaxCPUs is the most CPUs whose tables fit in MPTableMaxSize with
// the default interrupt sources: 16+44 header bytes, 20 per CPU, and 8 for
// each of the bus, the IOAPIC, 15 ISA IRQs and 2 local interrupts.
const MPTableMaxCPUs = (MPTableMaxSize - mpFloatSize - mpHeaderSize - (1+1+15+2)*mpSmallEntrySize) / mpProcessorSize

// MP table entry types and field values (MP spec §4.3).
const (
	mpEntryProcessor = 0
	mpEntryBus       = 1
	mpEntryIOAPIC    = 2
	mpEntryIOInt     = 3
	mpEntryLocalInt  = 4

	mpIntINT    = 0 // vectored interrupt from the IOAPIC's redirection table
	mpIntNMI    = 1
	mpIntExtINT = 3

	mpPolarityActiveHigh = 0b01      // flags bits 0-1 (0 = conforms to bus)
	mpTriggerLevel       = 0b11 << 2 // flags bits 2-3 (0 = conforms to bus)

	mpCPUEnabled = 1 << 0
	mpCPUBSP     = 1 << 1

	// mpCPUSignature is family 6, model 0, stepping 0: a plausible P6-class
	// stepping/model/family word; Linux only prints it.
	mpCPUSignature = 0x00000600
	// mpCPUFeatures is CPUID.1:EDX for FPU, TSC, MSR, CX8 and APIC, the
	// features the spec says the field mirrors.
	mpCPUFeatures = 1<<0 | 1<<4 | 1<<5 | 1<<8 | 1<<9

	mpHeaderSize     = 44
	mpFloatSize      = 16
	mpProcessorSize  = 20
	mpSmallEntrySize = 8
)

// MPIntSrc describes how one ISA IRQ is wired in the MP table, overriding
// the default (ISA IRQ n on pin n, IRQ 0 on pin 2, edge, conforms to bus).
type MPIntSrc struct {
	IRQ        uint8 // ISA IRQ (source bus IRQ); 0-15 replace a default entry, others are appended
	Pin        uint8 // IOAPIC input pin (0-23)
	Level      bool  // level-triggered instead of the ISA default (edge)
	ActiveHigh bool  // polarity stated as active-high instead of "conforms to bus"
}

// BuildMPTable returns the floating pointer structure followed by the
// configuration table, to be copied to guest-physical address base. CPU i
// gets APIC ID i; CPU 0 is the bootstrap processor. The result fits in
// MPTableMaxSize for up to MPTableMaxCPUs CPUs without extra irqs; the
// caller checks its length against the room it has.
//
// Preconditions: 1 <= ncpus <= 254, ncpus <= ioapicID < 255, every
// irqs[i].Pin < IOAPICPins (the VMM's configuration, not guest input).
func BuildMPTable(base uint32, ncpus int, ioapicID uint8, ioapicAddr uint32, irqs []MPIntSrc) []byte {
	if ncpus < 1 || ncpus >= devices.APICBroadcast || int(ioapicID) < ncpus || ioapicID == devices.APICBroadcast {
		panic(fmt.Sprintf("BuildMPTable: %d CPUs with IOAPIC id %d", ncpus, ioapicID))
	}

	// ISA IRQ n → pin n, except that IRQ 0 (the PIT) is on pin 2, the PC
	// convention QEMU and real chipsets follow. IRQ 2 is the 8259 cascade,
	// which never interrupts, and its pin now carries IRQ 0, so it gets no
	// entry.
	type src struct {
		irq   uint8  // ISA IRQ
		pin   uint8  // IOAPIC pin
		flags uint16 // polarity (bits 0-1) and trigger mode (bits 2-3)
	}
	var srcs []src
	for irq := uint8(0); irq < 16; irq++ {
		switch irq {
		case 0:
			srcs = append(srcs, src{0, 2, 0})
		case 2:
		default:
			srcs = append(srcs, src{irq, irq, 0})
		}
	}
	for _, o := range irqs {
		if o.Pin >= devices.IOAPICPins {
			panic(fmt.Sprintf("BuildMPTable: IRQ %d on pin %d, IOAPIC has %d", o.IRQ, o.Pin, devices.IOAPICPins))
		}
		var flags uint16
		if o.ActiveHigh {
			flags |= mpPolarityActiveHigh
		}
		if o.Level {
			flags |= mpTriggerLevel
		}
		s := src{o.IRQ, o.Pin, flags}
		replaced := false
		for i := range srcs {
			if srcs[i].irq == o.IRQ {
				srcs[i], replaced = s, true
			}
		}
		if !replaced {
			srcs = append(srcs, s)
		}
	}

	nentries := ncpus + 1 + 1 + len(srcs) + 2
	tableLen := mpHeaderSize + ncpus*mpProcessorSize + (nentries-ncpus)*mpSmallEntrySize
	b := make([]byte, mpFloatSize+tableLen)
	le := binary.LittleEndian

	// Floating pointer structure (MP spec §4.1).
	fp := b[:mpFloatSize]
	copy(fp[0:4], "_MP_")
	le.PutUint32(fp[4:8], base+mpFloatSize)
	fp[8] = 1 // length in 16-byte paragraphs
	fp[9] = 4 // spec revision 1.4
	fp[10] = checksum8(fp)

	// Configuration table header (MP spec §4.2).
	t := b[mpFloatSize:]
	copy(t[0:4], "PCMP")
	le.PutUint16(t[4:6], uint16(tableLen))
	t[6] = 4 // spec revision 1.4
	copy(t[8:16], "SAMSARA ")
	copy(t[16:28], "SAMSARA VMM ")
	le.PutUint16(t[34:36], uint16(nentries))
	le.PutUint32(t[36:40], devices.LAPICBase)

	p := t[mpHeaderSize:]
	for cpu := range ncpus {
		p[0] = mpEntryProcessor
		p[1] = uint8(cpu) // local APIC ID
		p[2] = devices.LAPICVersion & 0xFF
		p[3] = mpCPUEnabled
		if cpu == 0 {
			p[3] |= mpCPUBSP
		}
		le.PutUint32(p[4:8], mpCPUSignature)
		le.PutUint32(p[8:12], mpCPUFeatures)
		p = p[mpProcessorSize:]
	}

	p[0] = mpEntryBus
	p[1] = 0 // bus id
	copy(p[2:8], "ISA   ")
	p = p[mpSmallEntrySize:]

	p[0] = mpEntryIOAPIC
	p[1] = ioapicID
	p[2] = devices.IOAPICVersion & 0xFF
	p[3] = 1 // enabled
	le.PutUint32(p[4:8], ioapicAddr)
	p = p[mpSmallEntrySize:]

	for _, s := range srcs {
		p[0] = mpEntryIOInt
		p[1] = mpIntINT
		le.PutUint16(p[2:4], s.flags)
		p[4] = 0 // source bus: ISA
		p[5] = s.irq
		p[6] = ioapicID
		p[7] = s.pin
		p = p[mpSmallEntrySize:]
	}

	// Local interrupts: the (absent) 8259 on LINT0 as ExtINT and NMI on
	// LINT1 of every CPU (destination 0xFF), the virtual-wire wiring
	// Linux expects (MP spec §5.1 default configurations).
	for lint, typ := range []uint8{mpIntExtINT, mpIntNMI} {
		p[0] = mpEntryLocalInt
		p[1] = typ
		p[4] = 0    // source bus
		p[5] = 0    // source bus IRQ
		p[6] = 0xFF // all local APICs
		p[7] = uint8(lint)
		p = p[mpSmallEntrySize:]
	}

	t[7] = checksum8(t)
	return b
}

// checksum8 returns the byte that makes b (with that byte zero) sum to 0
// modulo 256, the checksum rule for every MP structure.
func checksum8(b []byte) uint8 {
	var sum uint8
	for _, x := range b {
		sum += x
	}
	return -sum
}
