package devices

import "time"

// MC146818 real-time clock and CMOS RAM, at index port 0x70 and data port
// 0x71 (Motorola MC146818A datasheet).
//
// The time comes from a function the VMM supplies, so record and replay
// can make it deterministic. The guest cannot set the clock: writes to the
// time registers are ignored (Linux only writes them for NTP sync or
// hwclock --systohc). No RTC interrupts are generated (IRQ 8 is unwired);
// Linux reads the time once at boot and keeps time with its own clocks.

// Ports.
const (
	rtcPortIndex = 0x70
	rtcPortData  = 0x71
)

// Register indices (datasheet Figure 3 "Address Map").
const (
	rtcSeconds    = 0x00
	rtcMinutes    = 0x02
	rtcHours      = 0x04
	rtcWeekday    = 0x06
	rtcDayOfMonth = 0x07
	rtcMonth      = 0x08
	rtcYear       = 0x09
	rtcRegA       = 0x0A
	rtcRegB       = 0x0B
	rtcRegC       = 0x0C
	rtcRegD       = 0x0D
	rtcCentury    = 0x32 // the PC/AT BIOS century byte
)

const (
	rtcBBinary = 1 << 2 // register B DM: binary instead of BCD
	rtcB24Hour = 1 << 1 // register B 24/12: 24-hour mode
	rtcDValid  = 1 << 7 // register D VRT: battery (and RAM) valid
	rtcHourPM  = 1 << 7 // hours register bit 7 in 12-hour mode
)

// RTCState is the RTC's complete state, gob-encodable.
type RTCState struct {
	Index uint8      // register selected through port 0x70 (bits 0-6)
	A     uint8      // register A: divider and rate select (UIP always reads 0)
	B     uint8      // register B: data mode, 24/12, interrupt enables
	C     uint8      // register C: interrupt flags, cleared by reading
	RAM   [128]uint8 // general CMOS bytes (everything but clock and status registers)
}

// RTC is the CMOS clock.
type RTC struct {
	now func() time.Time // current wall-clock time, supplied by the VMM
	s   RTCState         // all guest-visible state
}

// NewRTC creates an RTC reporting now() in UTC. Register A is 0x26 (32.768
// kHz time base, 1024 Hz rate) and B is 0x02 (24-hour, BCD), the values a
// PC BIOS leaves.
func NewRTC(now func() time.Time) *RTC {
	return &RTC{now: now, s: RTCState{A: 0x26, B: rtcB24Hour}}
}

// In implements PIODevice. The index port is write-only (reads float).
func (r *RTC) In(port uint16, data []byte) {
	var v uint8 = 0xFF
	if port == rtcPortData {
		v = r.read(r.s.Index)
	}
	putByteRead(data, v)
}

// Out implements PIODevice. Bit 7 of the index is the PC's NMI mask, which
// has nothing to mask here.
func (r *RTC) Out(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	switch port {
	case rtcPortIndex:
		r.s.Index = data[0] & 0x7F
	case rtcPortData:
		r.write(r.s.Index, data[0])
	}
}

func (r *RTC) read(reg uint8) uint8 {
	t := r.now().UTC()
	switch reg {
	case rtcSeconds:
		return r.encode(t.Second())
	case rtcMinutes:
		return r.encode(t.Minute())
	case rtcHours:
		if r.s.B&rtcB24Hour != 0 {
			return r.encode(t.Hour())
		}
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		v := r.encode(h)
		if t.Hour() >= 12 {
			v |= rtcHourPM
		}
		return v
	case rtcWeekday:
		return r.encode(int(t.Weekday()) + 1) // 1 = Sunday
	case rtcDayOfMonth:
		return r.encode(t.Day())
	case rtcMonth:
		return r.encode(int(t.Month()))
	case rtcYear:
		return r.encode(t.Year() % 100)
	case rtcCentury:
		return r.encode(t.Year() / 100 % 100)
	case rtcRegA:
		return r.s.A // UIP (bit 7) never set: reads never race an update
	case rtcRegB:
		return r.s.B
	case rtcRegC:
		v := r.s.C
		r.s.C = 0
		return v
	case rtcRegD:
		return rtcDValid
	}
	return r.s.RAM[reg&0x7F]
}

func (r *RTC) write(reg uint8, v uint8) {
	switch reg {
	case rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcDayOfMonth, rtcMonth, rtcYear, rtcCentury:
		// The clock is the VMM's: see the file comment.
	case rtcRegA:
		r.s.A = v & 0x7F // UIP is read-only
	case rtcRegB:
		r.s.B = v
	case rtcRegC, rtcRegD:
		// Read-only.
	default:
		r.s.RAM[reg&0x7F] = v
	}
}

// encode formats a clock field per register B's data mode.
func (r *RTC) encode(v int) uint8 {
	if r.s.B&rtcBBinary != 0 {
		return uint8(v)
	}
	return uint8(v/10%10)<<4 | uint8(v%10)
}

// Snapshot returns the RTC's state.
func (r *RTC) Snapshot() RTCState { return r.s }

// Restore replaces the RTC's state.
func (r *RTC) Restore(s RTCState) error {
	s.Index &= 0x7F
	r.s = s
	return nil
}
