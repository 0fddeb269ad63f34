package devices

// PIC is a stub of the two legacy 8259A interrupt controllers (ports
// 0x20-0x21, 0xA0-0xA1). samsara never delivers an interrupt through it
// (the IOAPIC does), but Linux decides from probe_8259A() whether legacy
// ISA IRQs 0-15 exist: it writes a mask to the master's IMR and reads it
// back. Without a PIC, Linux 6.1 uses the "NULL legacy PIC", has no legacy
// IRQs, and cannot register the PIT timer interrupt on IRQ 0 ("Failed to
// register legacy timer interrupt"), so jiffies never advance. The stub
// keeps the IMRs and the ICW initialization sequence (8259A datasheet,
// "Initialization Command Words") and reports no pending or in-service
// interrupts.
type PIC struct {
	// chips is master (0) and slave (1).
	chips [2]picChip
}

// picChip is one 8259A.
type picChip struct {
	// IMR is the interrupt mask register (OCW1).
	IMR uint8
	// ICWStep is the next initialization command word expected after ICW1
	// (0 = not initializing).
	ICWStep uint8
	// NeedICW4 is ICW1's IC4 bit.
	NeedICW4 bool
}

// PICState is the checkpointed state of both chips. picChip stays
// unexported: gob names it in a checkpoint's type descriptors, and the
// name is unchanged from when the PIC lived in vmm.
type PICState struct{ Chips [2]picChip }

// Snapshot returns the state of both chips.
func (p *PIC) Snapshot() PICState { return PICState{Chips: p.chips} }

// Restore sets the state of both chips; every value is valid.
func (p *PIC) Restore(s PICState) { p.chips = s.Chips }

func (p *PIC) chip(port uint16) *picChip {
	if port >= 0xA0 {
		return &p.chips[1]
	}
	return &p.chips[0]
}

// In reads IRR/ISR (even port: always 0, nothing is ever pending) or the
// IMR (odd port).
func (p *PIC) In(port uint16, data []byte) {
	clear(data)
	if port&1 == 1 {
		data[0] = p.chip(port).IMR
	}
}

// Out handles ICW1-4, OCW1 (mask) and OCW2/3 (EOI, read-register
// selection: accepted and ignored).
func (p *PIC) Out(port uint16, data []byte) {
	c, v := p.chip(port), data[0]
	if port&1 == 0 {
		if v&0x10 != 0 { // ICW1
			c.ICWStep, c.NeedICW4, c.IMR = 2, v&1 != 0, 0
		}
		return
	}
	switch c.ICWStep {
	case 2: // ICW2: vector base
		c.ICWStep = 3
	case 3: // ICW3: cascade wiring
		if c.NeedICW4 {
			c.ICWStep = 4
		} else {
			c.ICWStep = 0
		}
	case 4: // ICW4: mode
		c.ICWStep = 0
	default: // OCW1
		c.IMR = v
	}
}
