package devices

import (
	"fmt"
	"math/bits"
)

// Intel 8254 programmable interval timer on ports 0x40-0x43, plus the
// channel-2 bits of the PC's system control port B (0x61).
//
// Linux uses channel 0 as the boot-time clock event (mode 2 periodic or
// mode 0 one-shot, IRQ 0 → IOAPIC pin 2), and channel 2 with its gate on
// port 0x61 to calibrate the TSC (mode 0, polling OUT2 on port 0x61 bit 5
// and reading the count). Counts are derived from the guest Clock, never
// from host time.
//
// The counter is modelled by "elapsed ticks since the count was loaded":
// the value, the output pin and the interrupt times are all functions of
// it (8254 datasheet, "Mode Definitions"), so nothing needs to tick.

// PITHz is the 8254 input clock, Linux's PIT_TICK_RATE (the NTSC colour
// burst 14.31818 MHz divided by 12).
const PITHz = 1193182

// Ports.
const (
	pitPortCh0     = 0x40
	pitPortControl = 0x43
	pitPortB       = 0x61 // system control port B
)

// refreshNs is the period with which port 0x61 bit 4 (memory-refresh
// request) toggles on PCs: 15.085 µs. Old delay loops poll it.
const refreshNs = 15085

// PITChannelState is the state of one 8254 counter.
type PITChannelState struct {
	Mode          uint8    // counting mode 0-5 (6 and 7 alias 2 and 3)
	Access        uint8    // read/write access: 1 low byte, 2 high byte, 3 low then high
	BCD           bool     // count in BCD (4 decades) instead of binary
	Count         uint32   // reload value in input ticks, 1..65536 (a written 0 means 65536, or 10000 in BCD)
	Loaded        bool     // a complete count was written after the last control word
	NullCount     bool     // status bit 6: count written but not yet loaded into the counter
	Gate          bool     // GATE input (always high for channels 0 and 1)
	Counting      bool     // ticks are advancing (count loaded and gate/trigger allow it)
	Base          uint64   // ticks elapsed before Start (kept across gate pauses in modes 0 and 4)
	Start         int64    // guest ns when the current counting stretch began
	Fired         uint64   // channel 0: output rising edges already signalled since the load
	WriteHi       bool     // access 3: the next count write is the high byte
	WriteLo       uint8    // access 3: the low byte waiting for its high byte
	ReadHi        bool     // access 3, unlatched: the next read returns the high byte
	Latch         [2]uint8 // latched count bytes, in read order
	LatchLen      uint8    // number of latched bytes
	LatchPos      uint8    // latched bytes already read
	StatusLatched bool     // a read-back latched the status byte; next read returns it
	Status        uint8    // the latched status byte
}

// PITState is the PIT's complete state, gob-encodable.
type PITState struct {
	Channels [3]PITChannelState // counters 0, 1, 2
	PortB    uint8              // port 0x61 bits 0-3 (gate 2, speaker, parity enables)
}

// PIT is the 8254 with channel 0 wired to an interrupt line.
type PIT struct {
	clock Clock    // guest time
	irq   IRQLine  // receives channel 0's output (ISA IRQ 0)
	pin   int      // the IRQLine input channel 0 drives
	s     PITState // all guest-visible state
}

// NewPIT creates a PIT whose channel 0 pulses irq's pin at every rising
// edge of its output. Channels 0 and 1 have their gates tied high; channel
// 2's gate is port 0x61 bit 0, which starts low.
func NewPIT(clock Clock, irq IRQLine, pin int) *PIT {
	p := &PIT{clock: clock, irq: irq, pin: pin}
	p.s.Channels[0].Gate = true
	p.s.Channels[1].Gate = true
	return p
}

// ticksBetween converts a guest-time interval to whole input ticks.
func ticksBetween(from, to int64) uint64 {
	if to <= from {
		return 0
	}
	return mulDiv(uint64(to-from), PITHz, 1e9)
}

// ticksToNs is the guest time after which t ticks have elapsed (rounded
// up, so the tick count has reached t at that time).
func ticksToNs(t uint64) int64 {
	return int64(mulDiv(t, 1e9, PITHz) + boolToU64(mulMod(t, 1e9, PITHz) != 0))
}

// mulDiv returns a*b/c without intermediate overflow, saturating.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

func mulMod(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0
	}
	_, r := bits.Div64(hi, lo, c)
	return r
}

func boolToU64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// elapsed is the number of ticks counted since the count was loaded.
func (c *PITChannelState) elapsed(now int64) uint64 {
	if !c.Counting {
		return c.Base
	}
	return c.Base + ticksBetween(c.Start, now)
}

// value is the counting element's contents (datasheet mode definitions):
// modes 0, 1, 4, 5 count down once and wrap; mode 2 counts N..1; mode 3
// counts down by two twice per period.
func (c *PITChannelState) value(now int64) uint16 {
	if !c.Loaded {
		return uint16(c.Count)
	}
	d := c.elapsed(now)
	n := uint64(c.Count)
	var v uint64
	switch c.Mode {
	case 2:
		v = n - d%n
	case 3:
		v = n - (2*d)%n
	default:
		v = n - d
	}
	v &= 0xFFFF
	if c.BCD {
		return toBCD16(v % 10000)
	}
	return uint16(v)
}

// out is the level of the OUT pin.
func (c *PITChannelState) out(now int64) bool {
	if !c.Loaded {
		return c.Mode != 0 // mode 0 drives OUT low from the control word on
	}
	d := c.elapsed(now)
	n := uint64(c.Count)
	switch c.Mode {
	case 0:
		return d >= n
	case 1:
		return !c.Counting || d >= n // low from trigger to terminal count
	case 2:
		return !c.Counting || n == 1 || d%n != n-1 // low for the tick before reload
	case 3:
		return !c.Counting || d%n < (n+1)/2 // high for the first (longer) half
	default: // 4, 5: one low tick at terminal count
		return (c.Mode == 5 && !c.Counting) || d != n
	}
}

// eventTick is the elapsed-tick count of channel event k (1-based): the
// rising edges of OUT. ok=false if the mode has no k-th edge.
func (c *PITChannelState) eventTick(k uint64) (uint64, bool) {
	n := uint64(c.Count)
	switch c.Mode {
	case 2, 3:
		return k * n, true
	case 0, 1:
		return n, k == 1
	default: // 4, 5: OUT returns high one tick after terminal count
		return n + 1, k == 1
	}
}

// load starts counting a newly written count. A new count in mode 2 or 3
// really takes effect at the end of the current period; restarting at once
// is a simplification no Linux path can observe (it writes the control
// word before every count).
func (c *PITChannelState) load(v uint32, now int64) {
	if v == 0 {
		v = 65536
		if c.BCD {
			v = 10000
		}
	}
	c.Count, c.Loaded, c.NullCount = v, true, false
	c.Base, c.Start, c.Fired = 0, now, 0
	// Modes 1 and 5 wait for a gate rising edge; the others count while
	// the gate is high.
	c.Counting = c.Gate && c.Mode != 1 && c.Mode != 5
}

// setGate applies a GATE level change (datasheet, "Gate" table).
func (c *PITChannelState) setGate(g bool, now int64) {
	if g == c.Gate {
		return
	}
	c.Gate = g
	if !c.Loaded {
		return
	}
	switch {
	case c.Mode == 0 || c.Mode == 4: // gate low pauses, high resumes
		if g {
			c.Start, c.Counting = now, true
		} else {
			c.Base, c.Counting = c.elapsed(now), false
		}
	case g: // modes 1, 2, 3, 5: a rising edge (re)starts from the count
		c.Base, c.Start, c.Fired, c.Counting = 0, now, 0, true
	case c.Mode == 2 || c.Mode == 3: // gate low stops the count, OUT high
		c.Counting = false
		c.Base = 0
	}
}

// latchCount copies the current value for reading (counter latch command).
// A second latch before the first is read is ignored (datasheet).
func (c *PITChannelState) latchCount(now int64) {
	if c.LatchPos < c.LatchLen {
		return
	}
	v := c.value(now)
	c.LatchPos = 0
	switch c.Access {
	case 1:
		c.Latch, c.LatchLen = [2]uint8{uint8(v)}, 1
	case 2:
		c.Latch, c.LatchLen = [2]uint8{uint8(v >> 8)}, 1
	default:
		c.Latch, c.LatchLen = [2]uint8{uint8(v), uint8(v >> 8)}, 2
	}
}

func (c *PITChannelState) read(now int64) uint8 {
	if c.StatusLatched {
		c.StatusLatched = false
		return c.Status
	}
	if c.LatchPos < c.LatchLen {
		b := c.Latch[c.LatchPos]
		c.LatchPos++
		return b
	}
	v := c.value(now)
	switch c.Access {
	case 1:
		return uint8(v)
	case 2:
		return uint8(v >> 8)
	}
	c.ReadHi = !c.ReadHi
	if c.ReadHi {
		return uint8(v)
	}
	return uint8(v >> 8)
}

func (c *PITChannelState) write(b uint8, now int64) {
	switch c.Access {
	case 1:
		c.load(fromBCD16(c.BCD, uint16(b)), now)
	case 2:
		c.load(fromBCD16(c.BCD, uint16(b)<<8), now)
	default:
		if !c.WriteHi {
			c.WriteLo, c.WriteHi = b, true
			if c.Mode == 0 && c.Loaded {
				// Mode 0: writing the first byte stops the count.
				c.Base, c.Counting = c.elapsed(now), false
			}
			return
		}
		c.WriteHi = false
		c.load(fromBCD16(c.BCD, uint16(c.WriteLo)|uint16(b)<<8), now)
	}
}

// control handles a control word for this channel: access 0 is the counter
// latch command; anything else reprograms the channel and stops it until a
// count is written.
func (c *PITChannelState) control(v uint8, now int64) {
	access := (v >> 4) & 3
	if access == 0 {
		c.latchCount(now)
		return
	}
	mode := (v >> 1) & 7
	if mode > 5 {
		mode -= 4
	}
	gate := c.Gate
	*c = PITChannelState{Mode: mode, Access: access, BCD: v&1 != 0, NullCount: true, Gate: gate, Count: c.Count}
}

// In implements PIODevice.
func (p *PIT) In(port uint16, data []byte) {
	now := p.clock.Now()
	var v uint8 = 0xFF
	switch {
	case port >= pitPortCh0 && port < pitPortControl:
		v = p.s.Channels[port-pitPortCh0].read(now)
	case port == pitPortB:
		ch2 := &p.s.Channels[2]
		v = p.s.PortB & 0x0F
		if (now/refreshNs)&1 == 1 {
			v |= 1 << 4
		}
		if ch2.out(now) {
			v |= 1 << 5
		}
	}
	// The control port is write-only; reading it floats (0xFF).
	putByteRead(data, v)
}

// Out implements PIODevice.
func (p *PIT) Out(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	now := p.clock.Now()
	v := data[0]
	switch {
	case port >= pitPortCh0 && port < pitPortControl:
		p.s.Channels[port-pitPortCh0].write(v, now)
	case port == pitPortControl:
		sc := v >> 6
		if sc < 3 {
			p.s.Channels[sc].control(v, now)
			return
		}
		p.readBack(v, now)
	case port == pitPortB:
		p.s.PortB = v & 0x0F
		p.s.Channels[2].setGate(v&1 != 0, now)
	}
}

// readBack is the 8254 read-back command (0b11CSxxx0): bit 5 clear latches
// the counts, bit 4 clear latches the status, bits 1-3 select channels.
func (p *PIT) readBack(v uint8, now int64) {
	for i := range p.s.Channels {
		if v&(2<<i) == 0 {
			continue
		}
		c := &p.s.Channels[i]
		if v&0x20 == 0 {
			c.latchCount(now)
		}
		if v&0x10 == 0 && !c.StatusLatched {
			st := c.Access<<4 | c.Mode<<1
			if c.BCD {
				st |= 1
			}
			if c.NullCount {
				st |= 1 << 6
			}
			if c.out(now) {
				st |= 1 << 7
			}
			c.Status, c.StatusLatched = st, true
		}
	}
}

// NextDeadline implements Timed: the next rising edge of channel 0.
func (p *PIT) NextDeadline() (int64, bool) {
	c := &p.s.Channels[0]
	if !c.Counting {
		return 0, false
	}
	t, ok := c.eventTick(c.Fired + 1)
	if !ok {
		return 0, false
	}
	if t <= c.Base {
		return c.Start, true
	}
	return c.Start + ticksToNs(t-c.Base), true
}

// Poll implements Timed: it pulses the IRQ line once for channel 0's due
// rising edges (several missed periods coalesce into one edge, as they
// would into one IRR bit).
func (p *PIT) Poll(now int64) {
	c := &p.s.Channels[0]
	if !c.Counting {
		return
	}
	d := c.elapsed(now)
	fired := c.Fired
	for {
		t, ok := c.eventTick(fired + 1)
		if !ok || t > d {
			break
		}
		if c.Mode == 2 || c.Mode == 3 {
			fired = d / uint64(c.Count) // skip straight past missed periods
			break
		}
		fired++
	}
	if fired == c.Fired {
		return
	}
	c.Fired = fired
	p.irq.SetIRQ(p.pin, true)
	p.irq.SetIRQ(p.pin, false)
}

// Snapshot returns the PIT's state.
func (p *PIT) Snapshot() PITState { return p.s }

// Restore replaces the PIT's state.
func (p *PIT) Restore(s PITState) error {
	for i, c := range s.Channels {
		if c.Mode > 5 || c.Access > 3 || c.LatchLen > 2 || (c.Loaded && (c.Count == 0 || c.Count > 65536)) {
			return fmt.Errorf("pit: channel %d state is invalid", i)
		}
	}
	p.s = s
	return nil
}

// toBCD16 encodes v < 10000 as four BCD digits.
func toBCD16(v uint64) uint16 {
	return uint16(v/1000%10)<<12 | uint16(v/100%10)<<8 | uint16(v/10%10)<<4 | uint16(v%10)
}

// fromBCD16 decodes a count written in BCD mode (digits above 9 are taken
// at face value, as the counter's decades would count them).
func fromBCD16(bcd bool, v uint16) uint32 {
	if !bcd {
		return uint32(v)
	}
	return uint32(v>>12&0xF)*1000 + uint32(v>>8&0xF)*100 + uint32(v>>4&0xF)*10 + uint32(v&0xF)
}
