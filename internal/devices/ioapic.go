package devices

import (
	"encoding/binary"
	"fmt"
)

// I/O APIC (Intel 82093AA datasheet), emulated in userspace.
//
// The guest sees two registers in the MMIO window at 0xFEC00000: IOREGSEL
// (offset 0x00) selects an indirect register, IOWIN (offset 0x10) reads or
// writes it. Version 0x11 has no directed-EOI register: EOIs arrive as
// broadcasts from the LAPICs (APICBus → IOAPIC.EOI).

// IOAPICBase is the default guest-physical address of the IOAPIC window.
const IOAPICBase = 0xFEC00000

// IOAPICPins is the number of redirection-table entries (input pins).
const IOAPICPins = 24

// IOAPICVersion is the version register: max redirection entry 23 (bits
// 16-23) and version 0x11, as on the 82093AA and QEMU's IOAPIC.
const IOAPICVersion = 0x00170011

// Indirect register indices (IOREGSEL values).
const (
	ioapicRegID    = 0x00
	ioapicRegVer   = 0x01
	ioapicRegArb   = 0x02
	ioapicRegRedir = 0x10 // entry n is at 0x10+2n (low) and 0x11+2n (high)
)

// Redirection entry bits (82093AA §3.2.4).
const (
	redirMasked    = 1 << 16 // interrupt mask
	redirLevel     = 1 << 15 // trigger mode: 1 level, 0 edge
	redirRemoteIRR = 1 << 14 // level: accepted by a LAPIC, EOI pending (RO)
	redirActiveLow = 1 << 13 // input pin polarity: 1 active low
	redirLogical   = 1 << 11 // destination mode: 1 logical
	// redirWritable is every bit the guest may write: vector, delivery mode,
	// destination mode, polarity, trigger mode, mask and the destination
	// field (56-63). Delivery status (12) and remote IRR (14) are read-only.
	redirWritable = 0xFF000000_0001AFFF
)

// IOAPICState is the IOAPIC's complete state, gob-encodable.
type IOAPICState struct {
	ID    uint8              // IOAPIC ID (ID register bits 24-27)
	Sel   uint8              // IOREGSEL: the register IOWIN accesses
	Redir [IOAPICPins]uint64 // redirection table
	Lines [IOAPICPins]bool   // input levels as devices drive them (true = asserted)
}

// IOAPIC routes device interrupt lines to LAPIC interrupt messages.
type IOAPIC struct {
	bus *APICBus    // where interrupt messages go
	s   IOAPICState // all guest-visible state
}

// NewIOAPIC creates an IOAPIC and registers it with bus for EOI
// broadcasts. Its ID is the CPU count, the first ID after the LAPICs' (as
// QEMU numbers it); the MP table's IOAPIC entry must say the same. The ID
// register has 4 bits, so it wraps above 15 CPUs; Linux reads the ID from
// the MP table and only warns about a mismatch. All entries start masked
// (82093AA reset state).
func NewIOAPIC(bus *APICBus) *IOAPIC {
	io := &IOAPIC{bus: bus, s: IOAPICState{ID: uint8(bus.NumCPUs()) & 0xF}}
	for i := range io.s.Redir {
		io.s.Redir[i] = redirMasked
	}
	bus.SetIOAPIC(io)
	return io
}

// Read implements MMIODevice. Only the two registers exist; a narrower read
// returns the low bytes of the 32-bit register.
func (io *IOAPIC) Read(off uint64, data []byte) {
	var v uint32
	switch off {
	case 0x00:
		v = uint32(io.s.Sel)
	case 0x10:
		v = io.readIndirect()
	}
	var buf [8]byte
	binary.LittleEndian.PutUint32(buf[:4], v)
	copy(data, buf[:])
}

// Write implements MMIODevice. IOREGSEL takes its low byte from any write
// size (it is an 8-bit register); IOWIN needs a 32-bit write, as the
// datasheet requires dword accesses.
func (io *IOAPIC) Write(off uint64, data []byte) {
	switch {
	case off == 0x00 && len(data) >= 1:
		io.s.Sel = data[0]
	case off == 0x10 && len(data) == 4:
		io.writeIndirect(binary.LittleEndian.Uint32(data))
	}
}

func (io *IOAPIC) readIndirect() uint32 {
	switch sel := io.s.Sel; {
	case sel == ioapicRegID, sel == ioapicRegArb:
		return uint32(io.s.ID) << 24
	case sel == ioapicRegVer:
		return IOAPICVersion
	case sel >= ioapicRegRedir && sel < ioapicRegRedir+2*IOAPICPins:
		e := io.s.Redir[(sel-ioapicRegRedir)/2]
		if sel&1 == 1 {
			return uint32(e >> 32)
		}
		return uint32(e)
	}
	return 0
}

func (io *IOAPIC) writeIndirect(v uint32) {
	sel := io.s.Sel
	switch {
	case sel == ioapicRegID:
		io.s.ID = uint8(v>>24) & 0xF
	case sel >= ioapicRegRedir && sel < ioapicRegRedir+2*IOAPICPins:
		pin := int(sel-ioapicRegRedir) / 2
		old := io.s.Redir[pin]
		var e uint64
		if sel&1 == 1 {
			e = old&0xFFFFFFFF | uint64(v)<<32
		} else {
			e = old&^0xFFFFFFFF | uint64(v)
		}
		e = e&redirWritable | old&redirRemoteIRR
		if e&redirLevel == 0 {
			e &^= redirRemoteIRR // remote IRR is undefined for edge entries
		}
		io.s.Redir[pin] = e
		// Unmasking (or retargeting) a level entry whose line is still
		// asserted delivers it now; edges seen while masked are lost
		// (82093AA §3.2.4, "Interrupt Mask").
		io.serviceLevel(pin)
	}
	// Version and arbitration registers are read-only.
}

// asserted reports whether pin's input is active under its polarity.
func (io *IOAPIC) asserted(pin int) bool {
	return io.s.Lines[pin] != (io.s.Redir[pin]&redirActiveLow != 0)
}

// SetIRQ implements IRQLine. level is the wire level the device drives;
// active-low entries invert it. Edge entries deliver on an inactive→active
// transition; level entries deliver while active and remote IRR is clear.
func (io *IOAPIC) SetIRQ(pin int, level bool) {
	if pin < 0 || pin >= IOAPICPins {
		return
	}
	was := io.asserted(pin)
	io.s.Lines[pin] = level
	e := io.s.Redir[pin]
	if e&redirLevel != 0 {
		io.serviceLevel(pin)
		return
	}
	if e&redirMasked == 0 && !was && io.asserted(pin) {
		io.send(pin)
	}
}

// serviceLevel delivers a level-triggered entry if it is unmasked, its
// line is active and no earlier delivery is awaiting EOI.
func (io *IOAPIC) serviceLevel(pin int) {
	e := io.s.Redir[pin]
	if e&redirLevel == 0 || e&(redirMasked|redirRemoteIRR) != 0 || !io.asserted(pin) {
		return
	}
	io.send(pin)
}

// send turns entry pin into an interrupt message. A level-triggered
// message accepted by some LAPIC sets remote IRR until that LAPIC's EOI.
func (io *IOAPIC) send(pin int) {
	e := io.s.Redir[pin]
	level := e&redirLevel != 0
	n := io.bus.deliver(uint32(e>>56), e&redirLogical != 0, uint8(e>>8)&7, uint8(e), level)
	if level && n > 0 {
		io.s.Redir[pin] |= redirRemoteIRR
	}
}

// EOI is the broadcast EOI for vector from a LAPIC: every level entry with
// that vector clears remote IRR and is redelivered if still asserted.
func (io *IOAPIC) EOI(vector uint8) {
	for pin := range io.s.Redir {
		e := io.s.Redir[pin]
		if uint8(e) != vector || e&redirLevel == 0 || e&redirRemoteIRR == 0 {
			continue
		}
		io.s.Redir[pin] &^= redirRemoteIRR
		io.serviceLevel(pin)
	}
}

// Snapshot returns the IOAPIC's state.
func (io *IOAPIC) Snapshot() IOAPICState { return io.s }

// Restore replaces the IOAPIC's state without delivering anything: pending
// interrupts are already recorded in the LAPICs' snapshots.
func (io *IOAPIC) Restore(s IOAPICState) error {
	if s.ID > 0xF {
		return fmt.Errorf("ioapic: id %d does not fit in 4 bits", s.ID)
	}
	io.s = s
	return nil
}
