package devices

import (
	"bytes"
	"testing"
)

func newTestUART() (*UART, *bytes.Buffer, *irqRecorder) {
	var out bytes.Buffer
	irq := newIRQRecorder()
	return NewUART(&out, irq, 4), &out, irq
}

func TestUARTRegisters(t *testing.T) {
	const base = COM1Base
	u, out, _ := newTestUART()
	outb(u, base+uartLCR, 0x03) // 8N1
	for _, b := range []byte("hi\n") {
		outb(u, base, b)
	}
	if out.String() != "hi\n" {
		t.Errorf("output %q", out.String())
	}
	if got := inb(u, base+uartLSR); got != lsrTHRE|lsrTEMT {
		t.Errorf("idle LSR = %#x", got)
	}
	u.Input([]byte("x"))
	if got := inb(u, base+uartLSR); got != lsrTHRE|lsrTEMT|lsrDR {
		t.Errorf("LSR with input = %#x", got)
	}
	if got := inb(u, base); got != 'x' {
		t.Errorf("RBR = %q", got)
	}
	if got := inb(u, base+uartLSR); got&lsrDR != 0 {
		t.Errorf("LSR after reading the only byte = %#x", got)
	}

	// Divisor latch: with DLAB set, offsets 0 and 1 are DLL and DLM.
	outb(u, base+uartLCR, 0x83)
	outb(u, base+0, 0x01)
	outb(u, base+1, 0x02)
	if inb(u, base+0) != 0x01 || inb(u, base+1) != 0x02 {
		t.Error("divisor latch does not read back")
	}
	outb(u, base+uartLCR, 0x03)
	if got := inb(u, base+uartIER); got != 0 {
		t.Errorf("IER = %#x after writing DLM", got)
	}
	if out.String() != "hi\n" {
		t.Errorf("a DLL write reached the output: %q", out.String())
	}

	outb(u, base+uartSCR, 0xA5)
	if got := inb(u, base+uartSCR); got != 0xA5 {
		t.Errorf("scratch = %#x", got)
	}
	outb(u, base+uartIER, 0xFF) // 8250 autoconfig: only bits 0-3 exist
	if got := inb(u, base+uartIER); got != 0x0F {
		t.Errorf("IER = %#x, want 0x0F", got)
	}
	outb(u, base+uartIER, 0)

	if got := inb(u, base+uartIIR); got != iirNone {
		t.Errorf("IIR with FIFOs off = %#x", got)
	}
	outb(u, base+uartIIR, 0x01) // FCR: enable FIFOs → 16550A signature
	if got := inb(u, base+uartIIR); got != iirFIFOOn|iirNone {
		t.Errorf("IIR with FIFOs on = %#x", got)
	}
	if got := inb(u, base+uartMSR); got != msrCTS|msrDSR|msrDCD {
		t.Errorf("MSR = %#x", got)
	}
}

// TestUARTLoopback is the check Linux's autoconfig makes (MCR=0x1A must
// give MSR&0xF0 = 0x90), plus data in loopback.
func TestUARTLoopback(t *testing.T) {
	const base = COM1Base
	tests := []struct {
		mcr  uint8
		want uint8 // MSR bits 4-7
	}{
		{mcrLoop | mcrOUT2 | mcrRTS, msrDCD | msrCTS}, // 0x1A → 0x90
		{mcrLoop | mcrDTR | mcrOUT1, msrDSR | msrRI},
		{mcrLoop, 0},
		{mcrLoop | 0x0F, 0xF0},
	}
	for _, tc := range tests {
		u, out, _ := newTestUART()
		outb(u, base+uartMCR, tc.mcr)
		if got := inb(u, base+uartMSR) & 0xF0; got != tc.want {
			t.Errorf("MCR %#x: MSR %#x, want %#x", tc.mcr, got, tc.want)
		}
		outb(u, base, 'L')
		if out.Len() != 0 {
			t.Errorf("MCR %#x: loopback data reached the output", tc.mcr)
		}
		if inb(u, base+uartLSR)&lsrDR == 0 || inb(u, base) != 'L' {
			t.Errorf("MCR %#x: loopback byte not received", tc.mcr)
		}
	}
	// Leaving loopback changes DSR and CTS: the delta bits record it.
	u, _, _ := newTestUART()
	outb(u, base+uartMCR, mcrLoop)
	inb(u, base+uartMSR)
	outb(u, base+uartMCR, 0)
	if got := inb(u, base+uartMSR); got != msrCTS|msrDSR|msrDCD|0x0B {
		t.Errorf("MSR after leaving loopback = %#x, want deltas 0x0B", got)
	}
	if got := inb(u, base+uartMSR); got&0x0F != 0 {
		t.Errorf("MSR deltas not cleared by the read: %#x", got)
	}
}

func TestUARTInterrupts(t *testing.T) {
	const base = COM1Base
	tests := []struct {
		name    string
		ier     uint8
		input   string
		mcrLoop bool
		wantIIR uint8 // first IIR read
		line    bool  // IRQ level before reading IIR
	}{
		{name: "none enabled", ier: 0, input: "a", wantIIR: iirNone},
		{name: "THRE", ier: ierTHRE, wantIIR: iirTHRE, line: true},
		{name: "RDA", ier: ierRDA, input: "a", wantIIR: iirRDA, line: true},
		{name: "RDA over THRE", ier: ierRDA | ierTHRE, input: "a", wantIIR: iirRDA, line: true},
		{name: "no data no RDA", ier: ierRDA, wantIIR: iirNone},
		{name: "modem status", ier: ierMS, mcrLoop: true, wantIIR: iirMS, line: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, _, irq := newTestUART()
			if tc.mcrLoop {
				outb(u, base+uartMCR, mcrLoop|mcrRTS)
			}
			u.Input([]byte(tc.input))
			outb(u, base+uartIER, tc.ier)
			if irq.levels[4] != tc.line {
				t.Errorf("IRQ line %v, want %v", irq.levels[4], tc.line)
			}
			if got := inb(u, base+uartIIR); got != tc.wantIIR {
				t.Errorf("IIR = %#x, want %#x", got, tc.wantIIR)
			}
		})
	}
}

func TestUARTTHREInterruptCycle(t *testing.T) {
	const base = COM1Base
	u, _, irq := newTestUART()
	outb(u, base+uartIER, ierTHRE)
	if !irq.levels[4] || irq.rises[4] != 1 {
		t.Fatal("enabling THRE with an empty THR did not raise the line")
	}
	if got := inb(u, base+uartIIR); got != iirTHRE {
		t.Fatalf("IIR = %#x", got)
	}
	if irq.levels[4] {
		t.Fatal("reading IIR did not clear the THRE interrupt")
	}
	if got := inb(u, base+uartIIR); got != iirNone {
		t.Fatalf("second IIR = %#x", got)
	}
	outb(u, base, 'z') // a write re-arms it
	if !irq.levels[4] || irq.rises[4] != 2 {
		t.Fatal("THR write did not re-raise THRE")
	}
	outb(u, base+uartIER, 0)
	if irq.levels[4] {
		t.Fatal("disabling THRE left the line high")
	}
	// Linux's UART_BUG_THRE probe: re-enabling raises it again.
	outb(u, base+uartIER, ierTHRE)
	if got := inb(u, base+uartIIR); got != iirTHRE {
		t.Errorf("IIR after re-enable = %#x", got)
	}

	// Received data: the line stays up until the data is read.
	outb(u, base+uartIER, ierRDA)
	u.Input([]byte("ab"))
	if !irq.levels[4] {
		t.Fatal("input did not raise the line")
	}
	inb(u, base)
	if !irq.levels[4] {
		t.Fatal("line dropped with a byte still pending")
	}
	inb(u, base)
	if irq.levels[4] {
		t.Fatal("line still high with no data")
	}
}

func TestUARTSnapshotRestore(t *testing.T) {
	u, _, _ := newTestUART()
	outb(u, COM1Base+uartLCR, 0x03)
	outb(u, COM1Base+uartSCR, 0x77)
	u.Input([]byte("pending"))
	snap := u.Snapshot()
	v, _, _ := newTestUART()
	if err := v.Restore(snap); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for inb(v, COM1Base+uartLSR)&lsrDR != 0 {
		got = append(got, inb(v, COM1Base))
	}
	if string(got) != "pending" || inb(v, COM1Base+uartSCR) != 0x77 {
		t.Errorf("restored input %q", got)
	}
	if len(u.Snapshot().Input) != len("pending") {
		t.Error("reading the restored UART consumed the original's input")
	}
}

func TestUARTOverrun(t *testing.T) {
	u, _, irq := newTestUART()
	outb(u, COM1Base+uartIER, ierRLS)
	u.Input(make([]byte, uartInputMax+10))
	if got := inb(u, COM1Base+uartIIR); got != iirRLS || !irq.levels[4] {
		t.Errorf("IIR = %#x, line %v; want a line-status interrupt", got, irq.levels[4])
	}
	if got := inb(u, COM1Base+uartLSR); got&lsrOE == 0 {
		t.Errorf("LSR = %#x, want overrun", got)
	}
	if got := inb(u, COM1Base+uartLSR); got&lsrOE != 0 || irq.levels[4] {
		t.Errorf("overrun not cleared by reading LSR: %#x", got)
	}
	outb(u, COM1Base+uartIIR, 0x07) // FCR: enable and clear the FIFOs
	if got := inb(u, COM1Base+uartLSR); got&lsrDR != 0 {
		t.Error("clearing the receive FIFO left data")
	}
}
