package devices

import "testing"

// writeRedir programs redirection entry pin through IOREGSEL/IOWIN.
func writeRedir(io *IOAPIC, pin int, e uint64) {
	write32(io, 0x00, uint32(ioapicRegRedir+2*pin+1))
	write32(io, 0x10, uint32(e>>32))
	write32(io, 0x00, uint32(ioapicRegRedir+2*pin))
	write32(io, 0x10, uint32(e))
}

func readRedir(io *IOAPIC, pin int) uint64 {
	write32(io, 0x00, uint32(ioapicRegRedir+2*pin))
	lo := read32(io, 0x10)
	write32(io, 0x00, uint32(ioapicRegRedir+2*pin+1))
	return uint64(read32(io, 0x10))<<32 | uint64(lo)
}

func TestIOAPICRegisters(t *testing.T) {
	bus, _, _ := newTestBus(t, 2)
	io := NewIOAPIC(bus)
	for _, tc := range []struct {
		sel  uint32
		want uint32
	}{
		{ioapicRegID, 2 << 24}, // ID = CPU count
		{ioapicRegVer, 0x00170011},
		{ioapicRegArb, 2 << 24},
		{ioapicRegRedir, redirMasked}, // reset: masked
		{ioapicRegRedir + 47, 0},
	} {
		write32(io, 0x00, tc.sel)
		if got := read32(io, 0x10); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.sel, got, tc.want)
		}
	}
	writeRedir(io, 3, 0xFF000000_0001FFFF)
	if got := readRedir(io, 3); got != 0xFF000000_0001AFFF {
		t.Errorf("entry 3 = %#x, read-only bits must stay clear", got)
	}
}

func TestIOAPICDelivery(t *testing.T) {
	const (
		vec = 0x31
		pin = 4
		cpu = 1
	)
	dest := uint64(cpu) << 56
	type step struct {
		op   string // "up", "down": line level; "eoi": EOI on the CPU; "unmask"
		want bool   // vec became pending on the CPU during the step
	}
	tests := []struct {
		name  string
		entry uint64
		steps []step
	}{
		{
			name: "edge", entry: dest | vec,
			steps: []step{{"up", true}, {"up", false}, {"down", false}, {"up", true}, {"eoi", false}},
		},
		{
			name: "edge masked loses the edge", entry: dest | vec | redirMasked,
			steps: []step{{"up", false}, {"unmask", false}, {"down", false}, {"up", true}},
		},
		{
			name: "level holds until EOI", entry: dest | vec | redirLevel,
			steps: []step{{"up", true}, {"up", false}, {"eoi", true}, {"down", false}, {"eoi", false}, {"up", true}},
		},
		{
			name: "level masked delivers on unmask", entry: dest | vec | redirLevel | redirMasked,
			steps: []step{{"up", false}, {"unmask", true}, {"down", false}, {"eoi", false}},
		},
		{
			name: "level active low", entry: dest | vec | redirLevel | redirActiveLow | redirMasked,
			steps: []step{{"unmask", true}, {"up", false}, {"eoi", false}, {"down", true}},
		},
		{
			name: "logical destination", entry: 0x02<<56 | redirLogical | vec,
			steps: []step{{"up", true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus, _, _ := newTestBus(t, 2)
			write32(bus.LAPIC(cpu), lapicRegLDR, 0x02<<24)
			io := NewIOAPIC(bus)
			writeRedir(io, pin, tc.entry)
			l := bus.LAPIC(cpu)
			for i, s := range tc.steps {
				switch s.op {
				case "up":
					io.SetIRQ(pin, true)
				case "down":
					io.SetIRQ(pin, false)
				case "eoi":
					write32(l, lapicRegEOI, 0)
				case "unmask":
					writeRedir(io, pin, tc.entry&^redirMasked)
				}
				got := testBit(&l.s.IRR, vec)
				if got != s.want {
					t.Fatalf("step %d (%s): delivered=%v, want %v", i, s.op, got, s.want)
				}
				if got {
					l.Acknowledge(vec) // the CPU takes it; it stays in service until "eoi"
				}
				level := tc.entry&redirLevel != 0
				if rirr := readRedir(io, pin)&redirRemoteIRR != 0; rirr && !level {
					t.Fatalf("step %d: remote IRR set on an edge entry", i)
				}
			}
		})
	}
}

func TestIOAPICRemoteIRR(t *testing.T) {
	bus, _, _ := newTestBus(t, 1)
	io := NewIOAPIC(bus)
	writeRedir(io, 9, 0x41|redirLevel)
	io.SetIRQ(9, true)
	if readRedir(io, 9)&redirRemoteIRR == 0 {
		t.Fatal("remote IRR not set after a level delivery")
	}
	l := bus.LAPIC(0)
	l.Acknowledge(0x41)
	if !testBit(&l.s.TMR, 0x41) {
		t.Fatal("TMR not set for a level-triggered vector")
	}
	io.SetIRQ(9, false)
	write32(l, lapicRegEOI, 0)
	if readRedir(io, 9)&redirRemoteIRR != 0 {
		t.Error("EOI did not clear remote IRR")
	}
	if _, ok := l.PendingVector(); ok {
		t.Error("redelivered a deasserted line")
	}
	snap := io.Snapshot()
	io2 := NewIOAPIC(bus)
	if err := io2.Restore(snap); err != nil || io2.Snapshot() != snap {
		t.Errorf("restore: %v", err)
	}
}
