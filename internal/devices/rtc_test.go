package devices

import (
	"testing"
	"time"
)

func TestRTCRegisters(t *testing.T) {
	// Saturday 9 March 2024, 21:07:05 UTC.
	now := time.Date(2024, time.March, 9, 21, 7, 5, 0, time.UTC)
	tests := []struct {
		name string
		regB uint8 // 0 = leave the default (0x02: 24-hour, BCD)
		want map[uint8]uint8
	}{
		{
			name: "default BCD 24h",
			want: map[uint8]uint8{
				rtcSeconds: 0x05, rtcMinutes: 0x07, rtcHours: 0x21, rtcWeekday: 7,
				rtcDayOfMonth: 0x09, rtcMonth: 0x03, rtcYear: 0x24, rtcCentury: 0x20,
				rtcRegA: 0x26, rtcRegB: 0x02, rtcRegC: 0, rtcRegD: 0x80,
				0x0F: 0, 0x7F: 0, // other CMOS bytes
			},
		},
		{
			name: "binary 24h", regB: rtcBBinary | rtcB24Hour,
			want: map[uint8]uint8{rtcSeconds: 5, rtcHours: 21, rtcYear: 24, rtcCentury: 20},
		},
		{
			name: "BCD 12h", regB: 0x80, // SET bit only: BCD, 12-hour
			want: map[uint8]uint8{rtcHours: 0x80 | 0x09, rtcMinutes: 0x07},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRTC(func() time.Time { return now })
			if tc.regB != 0 {
				outb(r, 0x70, rtcRegB)
				outb(r, 0x71, tc.regB)
			}
			for reg, want := range tc.want {
				outb(r, 0x70, 0x80|reg) // bit 7 (NMI mask) is ignored
				if got := inb(r, 0x71); got != want {
					t.Errorf("register %#x = %#x, want %#x", reg, got, want)
				}
			}
		})
	}
}

func TestRTCWrites(t *testing.T) {
	now := time.Date(2001, time.January, 1, 0, 0, 0, 0, time.UTC)
	r := NewRTC(func() time.Time { return now })
	write := func(reg, v uint8) { outb(r, 0x70, reg); outb(r, 0x71, v) }
	read := func(reg uint8) uint8 { outb(r, 0x70, reg); return inb(r, 0x71) }
	write(rtcSeconds, 0x59) // ignored: the VMM owns the clock
	write(0x0F, 0x0A)       // Linux's warm-reset code in CMOS 0x0F
	write(rtcRegA, 0xA6)    // UIP is read-only
	write(rtcRegD, 0x00)
	for _, tc := range []struct{ reg, want uint8 }{
		{rtcSeconds, 0}, {0x0F, 0x0A}, {rtcRegA, 0x26}, {rtcRegD, 0x80}, {rtcYear, 0x01}, {rtcCentury, 0x20},
	} {
		if got := read(tc.reg); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	snap := r.Snapshot()
	r2 := NewRTC(func() time.Time { return now })
	if err := r2.Restore(snap); err != nil || r2.Snapshot() != snap {
		t.Errorf("restore: %v", err)
	}
}
