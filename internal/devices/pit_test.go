package devices

import "testing"

func TestPITConversions(t *testing.T) {
	for _, tc := range []struct {
		ticks uint64
		ns    int64
	}{
		{0, 0},
		{1, 839},          // 838.095… rounded up
		{1193, 999_848},   // 999_847.46…
		{2386, 1_999_695}, // 1_999_694.93…
		{PITHz, 1_000_000_000},
	} {
		if got := ticksToNs(tc.ticks); got != tc.ns {
			t.Errorf("ticksToNs(%d) = %d, want %d", tc.ticks, got, tc.ns)
		}
		if got := ticksBetween(0, tc.ns); got != tc.ticks {
			t.Errorf("ticksBetween(0, %d) = %d, want %d", tc.ns, got, tc.ticks)
		}
	}
}

func TestPITMode2Periodic(t *testing.T) {
	clk := &devClock{now: 0}
	irq := newIRQRecorder()
	p := NewPIT(clk, irq, 2)
	outb(p, 0x43, 0x34) // channel 0, lobyte/hibyte, mode 2, binary
	outb(p, 0x40, 1193&0xFF)
	outb(p, 0x40, 1193>>8)

	for i, tc := range []struct {
		poll       int64
		wantPulses int
		wantNext   int64
	}{
		{poll: 999_847, wantPulses: 0, wantNext: 999_848},
		{poll: 999_848, wantPulses: 1, wantNext: 1_999_695},
		{poll: 1_999_695, wantPulses: 2, wantNext: ticksToNs(3 * 1193)},
		// Late poll: one pulse for the missed periods, next edge on the grid.
		{poll: 5_000_000, wantPulses: 3, wantNext: ticksToNs(6 * 1193)},
	} {
		clk.now = tc.poll
		p.Poll(tc.poll)
		if irq.rises[2] != tc.wantPulses || irq.levels[2] {
			t.Errorf("step %d: %d pulses (line %v), want %d", i, irq.rises[2], irq.levels[2], tc.wantPulses)
		}
		if next, ok := p.NextDeadline(); !ok || next != tc.wantNext {
			t.Errorf("step %d: next deadline %d %v, want %d", i, next, ok, tc.wantNext)
		}
	}
}

func TestPITMode0OneShot(t *testing.T) {
	clk := &devClock{now: 100}
	irq := newIRQRecorder()
	p := NewPIT(clk, irq, 2)
	outb(p, 0x43, 0x30) // channel 0, lobyte/hibyte, mode 0
	outb(p, 0x40, 100)
	outb(p, 0x40, 0)
	next, ok := p.NextDeadline()
	if !ok || next != 100+ticksToNs(100) {
		t.Fatalf("deadline %d %v", next, ok)
	}
	p.Poll(next)
	p.Poll(next + 1_000_000_000)
	if irq.rises[2] != 1 {
		t.Errorf("%d pulses, want exactly 1", irq.rises[2])
	}
	if _, ok := p.NextDeadline(); ok {
		t.Error("one-shot still has a deadline after firing")
	}
}

func TestPITCounterRead(t *testing.T) {
	tests := []struct {
		name string
		at   int64   // guest ns since the count was loaded
		cmd  []uint8 // written to port 0x43 at `at`
		late int64   // ns between the command and the reads
		want []uint8 // bytes read from port 0x40
	}{
		// 500 µs = 596 ticks: mode 2 counts 1193..1, so 597.
		{name: "live lo/hi", at: 500_000, want: []uint8{597 & 0xFF, 597 >> 8}},
		{name: "latch holds", at: 500_000, cmd: []uint8{0x00}, late: 50_000, want: []uint8{597 & 0xFF, 597 >> 8}},
		{name: "second latch ignored", at: 500_000, cmd: []uint8{0x00, 0x00}, want: []uint8{597 & 0xFF, 597 >> 8}},
		// Read-back of count and status: status first (OUT high, lo/hi,
		// mode 2), then the latched count.
		{name: "read-back", at: 500_000, cmd: []uint8{0xC2}, late: 50_000, want: []uint8{0xB4, 597 & 0xFF, 597 >> 8}},
		// Status only; the count after it is live: 50 µs later = 59 ticks.
		{name: "read-back status only", at: 0, cmd: []uint8{0xE2}, late: 50_000, want: []uint8{0xB4, 1134 & 0xFF, 1134 >> 8}},
		// Wraps into the second period: 1200 ticks → 1193 - 7.
		{name: "second period", at: ticksToNs(1200), want: []uint8{1186 & 0xFF, 1186 >> 8}},
		{name: "at load", at: 0, cmd: []uint8{0x00}, want: []uint8{1193 & 0xFF, 1193 >> 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &devClock{now: 0}
			p := NewPIT(clk, newIRQRecorder(), 2)
			outb(p, 0x43, 0x34)
			outb(p, 0x40, 1193&0xFF)
			outb(p, 0x40, 1193>>8)
			clk.now = tc.at
			for _, c := range tc.cmd {
				outb(p, 0x43, c)
			}
			clk.now += tc.late
			for i, w := range tc.want {
				if got := inb(p, 0x40); got != w {
					t.Errorf("byte %d = %#x, want %#x", i, got, w)
				}
			}
		})
	}
}

// TestPITChannel2Gate follows Linux's pit_calibrate_tsc: gate high through
// port 0x61, mode 0 on channel 2, poll OUT2 on port 0x61 bit 5.
func TestPITChannel2Gate(t *testing.T) {
	clk := &devClock{now: 1000}
	p := NewPIT(clk, newIRQRecorder(), 2)
	const latch = 11932 // 10 ms
	outb(p, 0x61, (inb(p, 0x61)&^0x02)|0x01)
	outb(p, 0x43, 0xB0)
	outb(p, 0x42, latch&0xFF)
	outb(p, 0x42, latch>>8)
	out2 := func() bool { return inb(p, 0x61)&0x20 != 0 }
	end := 1000 + ticksToNs(latch)
	for _, tc := range []struct {
		at   int64
		want bool
	}{{1000, false}, {end - 1, false}, {end, true}, {end + 1_000_000, true}} {
		clk.now = tc.at
		if got := out2(); got != tc.want {
			t.Errorf("OUT2 at %d = %v, want %v", tc.at, got, tc.want)
		}
	}
	if got := inb(p, 0x61) & 0x0F; got != 0x01 {
		t.Errorf("port 0x61 low bits = %#x", got)
	}

	// Gate low pauses mode 0; gate high resumes from the same count.
	outb(p, 0x43, 0xB0)
	outb(p, 0x42, 0)
	outb(p, 0x42, 0x10) // 4096
	clk.now += ticksToNs(96)
	outb(p, 0x61, 0x00)
	outb(p, 0x43, 0x80) // latch channel 2
	first := uint16(inb(p, 0x42)) | uint16(inb(p, 0x42))<<8
	clk.now += 10_000_000
	outb(p, 0x61, 0x01)
	outb(p, 0x43, 0x80)
	second := uint16(inb(p, 0x42)) | uint16(inb(p, 0x42))<<8
	if first != 4000 || second != 4000 {
		t.Errorf("count with gate low moved: %d then %d, want 4000", first, second)
	}
}

func TestPITSnapshotRestore(t *testing.T) {
	clk := &devClock{now: 0}
	p := NewPIT(clk, newIRQRecorder(), 2)
	outb(p, 0x43, 0x34)
	outb(p, 0x40, 0x9B)
	outb(p, 0x40, 0x2E)
	snap := p.Snapshot()
	q := NewPIT(clk, newIRQRecorder(), 2)
	if err := q.Restore(snap); err != nil {
		t.Fatal(err)
	}
	a, _ := p.NextDeadline()
	b, _ := q.NextDeadline()
	if a != b || q.Snapshot() != snap {
		t.Errorf("restored PIT differs: deadline %d vs %d", b, a)
	}
	snap.Channels[0].Mode = 9
	if err := q.Restore(snap); err == nil {
		t.Error("restore accepted mode 9")
	}
}

// TestPITModes checks the OUT pin (seen through a read-back status) and the
// counter value in the square-wave and BCD cases.
func TestPITModes(t *testing.T) {
	tests := []struct {
		name    string
		control uint8
		count   [2]uint8
		at      uint64 // ticks after loading
		wantOut bool
		wantVal uint16
	}{
		{name: "mode 3 first half high", control: 0x36, count: [2]uint8{100, 0}, at: 10, wantOut: true, wantVal: 80},
		{name: "mode 3 second half low", control: 0x36, count: [2]uint8{100, 0}, at: 60, wantOut: false, wantVal: 80},
		{name: "mode 2 low before reload", control: 0x34, count: [2]uint8{100, 0}, at: 99, wantOut: false, wantVal: 1},
		{name: "mode 0 before terminal", control: 0x30, count: [2]uint8{100, 0}, at: 99, wantOut: false, wantVal: 1},
		{name: "mode 0 wraps after terminal", control: 0x30, count: [2]uint8{100, 0}, at: 101, wantOut: true, wantVal: 0xFFFF},
		{name: "mode 4 strobe", control: 0x38, count: [2]uint8{100, 0}, at: 100, wantOut: false, wantVal: 0},
		// BCD 0x1000 = 1000 counts; after 1 tick reads BCD 0999.
		{name: "BCD", control: 0x35, count: [2]uint8{0x00, 0x10}, at: 1, wantOut: true, wantVal: 0x0999},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &devClock{now: 0}
			p := NewPIT(clk, newIRQRecorder(), 2)
			outb(p, 0x43, tc.control)
			outb(p, 0x40, tc.count[0])
			outb(p, 0x40, tc.count[1])
			clk.now = ticksToNs(tc.at)
			outb(p, 0x43, 0xC2) // read-back count and status of channel 0
			st := inb(p, 0x40)
			val := uint16(inb(p, 0x40)) | uint16(inb(p, 0x40))<<8
			if out := st&0x80 != 0; out != tc.wantOut {
				t.Errorf("OUT = %v, want %v (status %#x)", out, tc.wantOut, st)
			}
			if val != tc.wantVal {
				t.Errorf("count = %#x, want %#x", val, tc.wantVal)
			}
		})
	}
}
