package devices

import (
	"fmt"
	"io"
)

// 16550A UART (National Semiconductor PC16550D datasheet), the PC's COM1
// at ports 0x3F8-0x3FF, IRQ 4.
//
// Transmission is instantaneous: a THR write goes straight to the output
// writer, so THRE and TEMT are always set and the THR-empty interrupt
// re-arms after every write. Received bytes wait in one queue that stands
// for the receive FIFO plus the host's flow-controlled input buffer.
//
// Linux's 8250 driver identifies the chip by poking it (autoconfig): the
// IER write/read-back test, the loopback MSR test (MCR=0x1A must read
// MSR&0xF0 = 0x90), and the FIFO bits of IIR after FCR=0x01 (0xC0 =
// 16550A). The register behaviour below is what those tests need.

// COM1Base is the I/O base of the first serial port.
const COM1Base = 0x3F8

// uartInputMax bounds queued input; beyond it bytes are dropped and LSR's
// overrun bit is set, as a full FIFO would.
const uartInputMax = 64 << 10

// Register offsets from the base port.
const (
	uartRBR = 0 // receive buffer (read), transmit holding (write); DLL when DLAB
	uartIER = 1 // interrupt enable; DLM when DLAB
	uartIIR = 2 // interrupt identification (read), FIFO control (write)
	uartLCR = 3 // line control
	uartMCR = 4 // modem control
	uartLSR = 5 // line status
	uartMSR = 6 // modem status
	uartSCR = 7 // scratch
)

// Register bits.
const (
	ierRDA  = 1 << 0 // received data available interrupt
	ierTHRE = 1 << 1 // THR empty interrupt
	ierRLS  = 1 << 2 // receiver line status interrupt
	ierMS   = 1 << 3 // modem status interrupt

	iirNone   = 0x01 // no interrupt pending
	iirMS     = 0x00 // modem status change
	iirTHRE   = 0x02 // THR empty
	iirRDA    = 0x04 // received data available
	iirRLS    = 0x06 // receiver line status
	iirFIFOOn = 0xC0 // FIFOs enabled (16550A)

	lcrDLAB = 1 << 7 // divisor latch access

	mcrDTR  = 1 << 0
	mcrRTS  = 1 << 1
	mcrOUT1 = 1 << 2
	mcrOUT2 = 1 << 3
	mcrLoop = 1 << 4

	lsrDR   = 1 << 0 // data ready
	lsrOE   = 1 << 1 // overrun error
	lsrTHRE = 1 << 5 // THR empty
	lsrTEMT = 1 << 6 // transmitter empty

	msrCTS = 1 << 4
	msrDSR = 1 << 5
	msrRI  = 1 << 6
	msrDCD = 1 << 7
)

// UARTState is the UART's complete state, gob-encodable.
type UARTState struct {
	IER        uint8  // interrupt enable (bits 0-3)
	LCR        uint8  // line control (bit 7 = DLAB)
	MCR        uint8  // modem control (bits 0-4)
	FCR        uint8  // last FIFO control write (bit 0 = FIFOs enabled; bits 6-7 trigger level)
	SCR        uint8  // scratch register
	DLL        uint8  // divisor latch, low byte
	DLM        uint8  // divisor latch, high byte
	Overrun    bool   // LSR overrun error, cleared by reading LSR
	MSRDelta   uint8  // MSR bits 0-3 (change indicators), cleared by reading MSR
	THRPending bool   // THR-empty interrupt condition (cleared by IIR read or THR write)
	Input      []byte // received bytes not yet read from RBR
	IRQ        bool   // the level the UART currently drives on its IRQ line
}

// UART is a 16550A serial port.
type UART struct {
	out    io.Writer // transmitted bytes go here
	outErr error     // first error from out; later bytes are still attempted
	irq    IRQLine   // the interrupt controller input
	pin    int       // irq's pin
	s      UARTState // all guest-visible state
}

// NewUART creates a 16550A that writes transmitted bytes to out and drives
// irq's pin. It decodes the low 3 bits of the port, so it can sit at any
// 8-aligned base (COM1Base normally).
func NewUART(out io.Writer, irq IRQLine, pin int) *UART {
	// Divisor 12 is 9600 baud, the BIOS default; nothing depends on it.
	return &UART{out: out, irq: irq, pin: pin, s: UARTState{DLL: 12}}
}

// Input queues bytes received from the host side, raising the received
// data interrupt if enabled.
func (u *UART) Input(b []byte) {
	u.receive(b)
	u.updateIRQ()
}

// OutputError returns the first error the output writer returned; the
// guest never sees it (a console must not fail the guest).
func (u *UART) OutputError() error { return u.outErr }

func (u *UART) receive(b []byte) {
	room := uartInputMax - len(u.s.Input)
	if len(b) > room {
		b = b[:room]
		u.s.Overrun = true
	}
	u.s.Input = append(u.s.Input, b...)
}

// msrStatus is MSR bits 4-7. In loopback mode the modem inputs are wired
// to the modem outputs (datasheet, MCR bit 4): CTS←RTS, DSR←DTR, RI←OUT1,
// DCD←OUT2. Otherwise the line looks like a connected null modem.
func (u *UART) msrStatus() uint8 {
	m := u.s.MCR
	if m&mcrLoop == 0 {
		return msrCTS | msrDSR | msrDCD
	}
	var v uint8
	if m&mcrRTS != 0 {
		v |= msrCTS
	}
	if m&mcrDTR != 0 {
		v |= msrDSR
	}
	if m&mcrOUT1 != 0 {
		v |= msrRI
	}
	if m&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// iir is the highest-priority pending interrupt (datasheet Table 4):
// line status, received data, THR empty, modem status.
func (u *UART) iir() uint8 {
	ier := u.s.IER
	switch {
	case ier&ierRLS != 0 && u.s.Overrun:
		return iirRLS
	case ier&ierRDA != 0 && len(u.s.Input) > 0:
		return iirRDA
	case ier&ierTHRE != 0 && u.s.THRPending:
		return iirTHRE
	case ier&ierMS != 0 && u.s.MSRDelta != 0:
		return iirMS
	}
	return iirNone
}

// updateIRQ drives the line high while any enabled condition holds.
func (u *UART) updateIRQ() {
	level := u.iir() != iirNone
	if level != u.s.IRQ {
		u.s.IRQ = level
		u.irq.SetIRQ(u.pin, level)
	}
}

// In implements PIODevice.
func (u *UART) In(port uint16, data []byte) {
	v := u.read(port & 7)
	u.updateIRQ()
	putByteRead(data, v)
}

func (u *UART) read(reg uint16) uint8 {
	dlab := u.s.LCR&lcrDLAB != 0
	switch reg {
	case uartRBR:
		if dlab {
			return u.s.DLL
		}
		if len(u.s.Input) == 0 {
			return 0
		}
		b := u.s.Input[0]
		u.s.Input = u.s.Input[1:]
		if len(u.s.Input) == 0 {
			u.s.Input = nil // let the backing array go
		}
		return b
	case uartIER:
		if dlab {
			return u.s.DLM
		}
		return u.s.IER
	case uartIIR:
		id := u.iir()
		if id == iirTHRE {
			u.s.THRPending = false // reading IIR clears a THRE source
		}
		if u.s.FCR&1 != 0 {
			id |= iirFIFOOn
		}
		return id
	case uartLCR:
		return u.s.LCR
	case uartMCR:
		return u.s.MCR
	case uartLSR:
		v := uint8(lsrTHRE | lsrTEMT)
		if len(u.s.Input) > 0 {
			v |= lsrDR
		}
		if u.s.Overrun {
			v |= lsrOE
			u.s.Overrun = false // error bits clear on read
		}
		return v
	case uartMSR:
		v := u.msrStatus() | u.s.MSRDelta
		u.s.MSRDelta = 0
		return v
	default: // uartSCR
		return u.s.SCR
	}
}

// Out implements PIODevice.
func (u *UART) Out(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	u.write(port&7, data[0])
	u.updateIRQ()
}

func (u *UART) write(reg uint16, v uint8) {
	dlab := u.s.LCR&lcrDLAB != 0
	switch reg {
	case uartRBR:
		if dlab {
			u.s.DLL = v
			return
		}
		if u.s.MCR&mcrLoop != 0 {
			u.receive([]byte{v}) // loopback: the transmitter feeds the receiver
		} else if _, err := u.out.Write([]byte{v}); err != nil && u.outErr == nil {
			u.outErr = fmt.Errorf("uart output: %w", err)
		}
		// The byte left at once, so THR is empty again: the THRE
		// interrupt clears on the write and re-arms immediately.
		u.s.THRPending = true
	case uartIER:
		if dlab {
			u.s.DLM = v
			return
		}
		old := u.s.IER
		u.s.IER = v & 0x0F
		// Enabling THRE interrupts with THR empty raises one at once
		// (Linux's startup THRE test depends on it); disabling drops it.
		if changed := old ^ u.s.IER; changed&ierTHRE != 0 {
			u.s.THRPending = u.s.IER&ierTHRE != 0
		}
	case uartIIR: // FCR
		if (v^u.s.FCR)&1 != 0 || v&0x02 != 0 {
			// Toggling FIFO enable or setting "clear receiver FIFO"
			// empties the receive FIFO (datasheet, FCR bits 0 and 1).
			u.s.Input = nil
		}
		u.s.FCR = v & 0xC9 // enable, DMA mode, trigger level; bits 1-2 self-clear
	case uartLCR:
		u.s.LCR = v
	case uartMCR:
		before := u.msrStatus()
		u.s.MCR = v & 0x1F
		after := u.msrStatus()
		// Delta bits (MSR 0-3) record changes of CTS, DSR, DCD and the
		// trailing edge of RI.
		ch := before ^ after
		if ch&msrCTS != 0 {
			u.s.MSRDelta |= 1 << 0
		}
		if ch&msrDSR != 0 {
			u.s.MSRDelta |= 1 << 1
		}
		if before&msrRI != 0 && after&msrRI == 0 {
			u.s.MSRDelta |= 1 << 2
		}
		if ch&msrDCD != 0 {
			u.s.MSRDelta |= 1 << 3
		}
	case uartSCR:
		u.s.SCR = v
	}
	// LSR and MSR are read-only (factory-test writes are ignored).
}

// Snapshot returns the UART's state; the input queue is copied.
func (u *UART) Snapshot() UARTState {
	s := u.s
	s.Input = append([]byte(nil), u.s.Input...)
	return s
}

// Restore replaces the UART's state. It does not drive the IRQ line: the
// interrupt controller's snapshot already holds the line level.
func (u *UART) Restore(s UARTState) error {
	if len(s.Input) > uartInputMax {
		return fmt.Errorf("uart: %d queued input bytes, limit %d", len(s.Input), uartInputMax)
	}
	s.Input = append([]byte(nil), s.Input...)
	u.s = s
	return nil
}
