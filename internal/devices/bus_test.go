package devices

import "testing"

// busDev is a PIO and MMIO device that only has a name.
type busDev struct{ name string }

func (*busDev) In(uint16, []byte)    {}
func (*busDev) Out(uint16, []byte)   {}
func (*busDev) Read(uint64, []byte)  {}
func (*busDev) Write(uint64, []byte) {}
func (d *busDev) String() string     { return d.name }

func TestBusLookup(t *testing.T) {
	uart, pit, a0, a1, blk := &busDev{"uart"}, &busDev{"pit"}, &busDev{"apic0"}, &busDev{"apic1"}, &busDev{"blk"}
	var b Bus
	b.AddPorts(0x3F8, 8, uart)
	b.AddPorts(0x40, 4, pit)
	b.AddPorts(0x61, 1, pit)
	b.AddMMIOPerCPU(0xFEE00000, 0x1000, func(cpu int) MMIODevice { return []MMIODevice{a0, a1}[cpu] })
	b.AddMMIO(0xD0000000, 0x1000, blk)

	for _, tc := range []struct {
		port uint16
		want PIODevice
	}{
		{0x3F7, nil}, {0x3F8, uart}, {0x3FF, uart}, {0x400, nil},
		{0x3F, nil}, {0x40, pit}, {0x43, pit}, {0x44, nil}, {0x60, nil}, {0x61, pit}, {0x62, nil},
		{0, nil}, {0xFFFF, nil},
	} {
		if got := b.Port(tc.port); got != tc.want {
			t.Errorf("Port(%#x) = %v, want %v", tc.port, got, tc.want)
		}
	}

	for _, tc := range []struct {
		cpu     int
		addr    uint64
		want    MMIODevice
		wantOff uint64
	}{
		{0, 0xFEE00000, a0, 0}, {1, 0xFEE00000, a1, 0}, {1, 0xFEE00FFF, a1, 0xFFF},
		{0, 0xFEDFFFFF, nil, 0}, {0, 0xFEE01000, nil, 0},
		{1, 0xD0000000, blk, 0}, {0, 0xD0000070, blk, 0x70}, {0, 0xD0001000, nil, 0},
		{0, 0, nil, 0}, {0, ^uint64(0), nil, 0},
	} {
		got, off := b.MMIO(tc.cpu, tc.addr)
		if got != tc.want || off != tc.wantOff {
			t.Errorf("MMIO(%d, %#x) = %v, %#x, want %v, %#x", tc.cpu, tc.addr, got, off, tc.want, tc.wantOff)
		}
	}
}

func TestBusRejectsBadRanges(t *testing.T) {
	d := &busDev{"d"}
	for _, tc := range []struct {
		name string
		add  func(b *Bus)
	}{
		{"port overlap", func(b *Bus) { b.AddPorts(0x3F8, 8, d); b.AddPorts(0x3FF, 1, d) }},
		{"port overlap below", func(b *Bus) { b.AddPorts(0x3F8, 8, d); b.AddPorts(0x3F0, 9, d) }},
		{"no ports", func(b *Bus) { b.AddPorts(0x3F8, 0, d) }},
		{"ports past 0xFFFF", func(b *Bus) { b.AddPorts(0xFFFF, 2, d) }},
		{"mmio overlap", func(b *Bus) { b.AddMMIO(0x1000, 0x1000, d); b.AddMMIO(0x1FFF, 1, d) }},
		{"mmio overlap below", func(b *Bus) { b.AddMMIO(0x1000, 0x1000, d); b.AddMMIO(0, 0x1001, d) }},
		{"mmio empty", func(b *Bus) { b.AddMMIO(0x1000, 0, d) }},
		{"mmio wraps", func(b *Bus) { b.AddMMIO(^uint64(0), 2, d) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.add(&Bus{})
		})
	}
	// Adjacent ranges are fine.
	var b Bus
	b.AddPorts(0x20, 2, d)
	b.AddPorts(0x22, 2, d)
	b.AddMMIO(0x1000, 0x1000, d)
	b.AddMMIO(0x2000, 0x1000, d)
	b.AddMMIO(0, 0x1000, d)
}
