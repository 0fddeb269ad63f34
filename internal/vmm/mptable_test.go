package vmm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// mpOneCPU is the expected table for one CPU at 0x9FC00 with IOAPIC id 1
// at 0xFEC00000, written out by hand from MP spec 1.4 chapter 4.
var mpOneCPU = []byte{
	// Floating pointer: "_MP_", 0x0009FC10, length 1, rev 4, checksum 0x8B.
	'_', 'M', 'P', '_', 0x10, 0xFC, 0x09, 0x00, 0x01, 0x04, 0x8B, 0, 0, 0, 0, 0,
	// Header: "PCMP", length 216, rev 4, checksum 0x0B, OEM, product.
	'P', 'C', 'M', 'P', 0xD8, 0x00, 0x04, 0x0B,
	'S', 'A', 'M', 'S', 'A', 'R', 'A', ' ',
	'S', 'A', 'M', 'S', 'A', 'R', 'A', ' ', 'V', 'M', 'M', ' ',
	0, 0, 0, 0, // OEM table pointer
	0, 0, // OEM table size
	20, 0, // entry count
	0x00, 0x00, 0xE0, 0xFE, // local APIC address
	0, 0, 0, 0, // extended table length, checksum, reserved
	// Processor: APIC id 0, version 0x14, enabled+BSP, signature, features.
	0, 0, 0x14, 0x03, 0x00, 0x06, 0x00, 0x00, 0x31, 0x03, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
	// Bus 0 "ISA   ".
	1, 0, 'I', 'S', 'A', ' ', ' ', ' ',
	// IOAPIC id 1, version 0x11, enabled, 0xFEC00000.
	2, 1, 0x11, 1, 0x00, 0x00, 0xC0, 0xFE,
	// I/O interrupts: INT, conforming, ISA bus, IRQ, IOAPIC 1, pin.
	3, 0, 0, 0, 0, 0, 1, 2, // IRQ 0 → pin 2
	3, 0, 0, 0, 0, 1, 1, 1,
	3, 0, 0, 0, 0, 3, 1, 3, // (no IRQ 2: the cascade)
	3, 0, 0, 0, 0, 4, 1, 4,
	3, 0, 0, 0, 0, 5, 1, 5,
	3, 0, 0, 0, 0, 6, 1, 6,
	3, 0, 0, 0, 0, 7, 1, 7,
	3, 0, 0, 0, 0, 8, 1, 8,
	3, 0, 0, 0, 0, 9, 1, 9,
	3, 0, 0, 0, 0, 10, 1, 10,
	3, 0, 0, 0, 0, 11, 1, 11,
	3, 0, 0, 0, 0, 12, 1, 12,
	3, 0, 0, 0, 0, 13, 1, 13,
	3, 0, 0, 0, 0, 14, 1, 14,
	3, 0, 0, 0, 0, 15, 1, 15,
	// Local interrupts: ExtINT → LINT0, NMI → LINT1, all APICs.
	4, 3, 0, 0, 0, 0, 0xFF, 0,
	4, 1, 0, 0, 0, 0, 0xFF, 1,
}

func TestMPTableOneCPUBytes(t *testing.T) {
	got := BuildMPTable(0x9FC00, 1, 1, devices.IOAPICBase, nil)
	if !bytes.Equal(got, mpOneCPU) {
		for i := range min(len(got), len(mpOneCPU)) {
			if got[i] != mpOneCPU[i] {
				t.Errorf("first difference at byte %d: got %#x, want %#x", i, got[i], mpOneCPU[i])
				break
			}
		}
		t.Fatalf("table is %d bytes, want %d", len(got), len(mpOneCPU))
	}
}

func TestMPTableStructure(t *testing.T) {
	tests := []struct {
		name       string
		ncpus      int
		irqs       []MPIntSrc
		wantIOInts int
		wantFlags  map[uint8]uint16 // ISA IRQ → flags
		wantPins   map[uint8]uint8  // ISA IRQ → pin
	}{
		{name: "1 cpu", ncpus: 1, wantIOInts: 15, wantPins: map[uint8]uint8{0: 2, 4: 4}},
		{name: "4 cpus", ncpus: 4, wantIOInts: 15},
		{name: "max cpus", ncpus: MPTableMaxCPUs, wantIOInts: 15},
		{
			name: "overrides", ncpus: 2, wantIOInts: 16,
			irqs:      []MPIntSrc{{IRQ: 5, Pin: 5, Level: true}, {IRQ: 16, Pin: 16, Level: true, ActiveHigh: true}},
			wantFlags: map[uint8]uint16{5: 0x0C, 16: 0x0D, 4: 0},
			wantPins:  map[uint8]uint8{16: 16},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const base = 0x9FC00
			ioapicID := uint8(tc.ncpus)
			b := BuildMPTable(base, tc.ncpus, ioapicID, devices.IOAPICBase, tc.irqs)
			if len(b) > MPTableMaxSize {
				t.Fatalf("%d bytes, limit %d", len(b), MPTableMaxSize)
			}
			le := binary.LittleEndian
			fp, ct := b[:16], b[16:]
			if string(fp[:4]) != "_MP_" || sum8(fp) != 0 || fp[8] != 1 || fp[9] != 4 {
				t.Errorf("bad floating pointer % x", fp)
			}
			if got := le.Uint32(fp[4:]); got != base+16 {
				t.Errorf("pointer %#x, want %#x", got, base+16)
			}
			n := int(le.Uint16(ct[4:]))
			if string(ct[:4]) != "PCMP" || n != len(ct) || sum8(ct[:n]) != 0 {
				t.Errorf("bad configuration table header % x", ct[:44])
			}
			if le.Uint32(ct[36:]) != devices.LAPICBase {
				t.Errorf("local APIC address %#x", le.Uint32(ct[36:]))
			}
			count := map[uint8]int{}
			pins := map[uint8]uint8{}
			flags := map[uint8]uint16{}
			p := ct[44:]
			for range le.Uint16(ct[34:]) {
				typ := p[0]
				count[typ]++
				switch typ {
				case mpEntryProcessor:
					if int(p[1]) != count[typ]-1 || (p[3]&mpCPUBSP != 0) != (p[1] == 0) || p[3]&mpCPUEnabled == 0 {
						t.Errorf("processor entry % x", p[:20])
					}
					p = p[20:]
					continue
				case mpEntryIOAPIC:
					if p[1] != ioapicID || le.Uint32(p[4:]) != devices.IOAPICBase {
						t.Errorf("IOAPIC entry % x", p[:8])
					}
				case mpEntryIOInt:
					pins[p[5]], flags[p[5]] = p[7], le.Uint16(p[2:])
				}
				p = p[8:]
			}
			if len(p) != 0 {
				t.Errorf("%d bytes after the last entry", len(p))
			}
			want := map[uint8]int{mpEntryProcessor: tc.ncpus, mpEntryBus: 1, mpEntryIOAPIC: 1, mpEntryIOInt: tc.wantIOInts, mpEntryLocalInt: 2}
			for typ, w := range want {
				if count[typ] != w {
					t.Errorf("%d entries of type %d, want %d", count[typ], typ, w)
				}
			}
			for irq, w := range tc.wantPins {
				if pins[irq] != w {
					t.Errorf("IRQ %d on pin %d, want %d", irq, pins[irq], w)
				}
			}
			for irq, w := range tc.wantFlags {
				if flags[irq] != w {
					t.Errorf("IRQ %d flags %#x, want %#x", irq, flags[irq], w)
				}
			}
		})
	}
}

func sum8(b []byte) uint8 {
	var s uint8
	for _, x := range b {
		s += x
	}
	return s
}
