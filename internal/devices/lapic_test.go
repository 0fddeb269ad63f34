package devices

import (
	"slices"
	"testing"
)

func TestLAPICTimer(t *testing.T) {
	const vec = 0xEC
	type step struct {
		at      int64  // guest ns (the timer is armed at 1000)
		current uint32 // expected current-count register before polling
		fires   bool   // the vector becomes pending when polled at `at`
		next    int64  // expected next deadline after polling; -1 = none
	}
	tests := []struct {
		name    string
		lvt     uint32
		dcr     uint32
		initial uint32
		steps   []step
	}{
		{
			name: "one-shot divide by 1", lvt: vec, dcr: 0xB, initial: 1_000_000,
			steps: []step{
				{at: 1000, current: 1_000_000, next: 1_001_000},
				{at: 501_000, current: 500_000, next: 1_001_000},
				{at: 1_000_999, current: 1, next: 1_001_000},
				{at: 1_001_000, current: 0, fires: true, next: -1},
				{at: 5_000_000, current: 0, next: -1},
			},
		},
		{
			name: "periodic divide by 2", lvt: vec | lvtTimerPeriodic, dcr: 0x0, initial: 500_000,
			steps: []step{
				{at: 251_000, current: 375_000, next: 1_001_000},
				{at: 1_001_000, current: 500_000, fires: true, next: 2_001_000},
				{at: 1_501_000, current: 250_000, next: 2_001_000},
				// Polled late: missed periods coalesce into one interrupt and
				// the deadline stays on the original grid.
				{at: 3_201_000, current: 400_000, fires: true, next: 4_001_000},
			},
		},
		{
			name: "periodic divide by 16", lvt: vec | lvtTimerPeriodic, dcr: 0x3, initial: 62_500,
			steps: []step{
				{at: 1_001_000, current: 62_500, fires: true, next: 2_001_000},
				{at: 1_001_016, current: 62_499, next: 2_001_000},
			},
		},
		{
			name: "masked one-shot counts but does not fire", lvt: vec | lvtMasked, dcr: 0xB, initial: 1000,
			steps: []step{
				{at: 1500, current: 500, next: 2000},
				{at: 2000, current: 0, next: -1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus, clk, _ := newTestBus(t, 1)
			l := bus.LAPIC(0)
			write32(l, lapicRegTimerDivide, tc.dcr)
			write32(l, lapicRegLVTTimer, tc.lvt)
			write32(l, lapicRegTimerInitial, tc.initial)
			for _, s := range tc.steps {
				clk.now = s.at
				if got := read32(l, lapicRegTimerCurrent); got != s.current {
					t.Errorf("at %d: current count %d, want %d", s.at, got, s.current)
				}
				l.Poll(s.at)
				v, ok := l.PendingVector()
				if ok != s.fires || (ok && v != vec) {
					t.Errorf("at %d: pending %#x %v, want fire=%v", s.at, v, ok, s.fires)
				}
				if ok {
					l.Acknowledge(v)
					write32(l, lapicRegEOI, 0)
				}
				dl, armed := l.NextDeadline()
				if (s.next < 0) == armed || (armed && dl != s.next) {
					t.Errorf("at %d: next deadline %d %v, want %d", s.at, dl, armed, s.next)
				}
			}
		})
	}
}

func TestLAPICTimerStop(t *testing.T) {
	bus, clk, _ := newTestBus(t, 1)
	l := bus.LAPIC(0)
	write32(l, lapicRegLVTTimer, 0x30|lvtTimerPeriodic)
	write32(l, lapicRegTimerInitial, 1_000_000)
	clk.now += 10
	write32(l, lapicRegTimerInitial, 0)
	if _, armed := l.NextDeadline(); armed {
		t.Fatal("writing initial count 0 did not stop the timer")
	}
	if got := read32(l, lapicRegTimerCurrent); got != 0 {
		t.Errorf("current count of a stopped timer = %d", got)
	}
}

func TestLAPICPriority(t *testing.T) {
	tests := []struct {
		name    string
		inISR   []uint8 // delivered and acknowledged first, in order
		inIRR   []uint8 // then delivered
		tpr     uint32
		wantPPR uint32
		want    uint8 // 0 = nothing deliverable
	}{
		{name: "highest wins", inIRR: []uint8{0x31, 0x52, 0x40}, want: 0x52},
		{name: "TPR blocks same class", inIRR: []uint8{0x52}, tpr: 0x50, wantPPR: 0x50},
		{name: "TPR lets higher class", inIRR: []uint8{0x61}, tpr: 0x5F, wantPPR: 0x5F, want: 0x61},
		{name: "ISR blocks same class", inISR: []uint8{0x45}, inIRR: []uint8{0x41}, wantPPR: 0x40},
		{name: "ISR lets higher class", inISR: []uint8{0x45}, inIRR: []uint8{0x51}, wantPPR: 0x40, want: 0x51},
		{name: "TPR above ISR", inISR: []uint8{0x45}, inIRR: []uint8{0x61}, tpr: 0x70, wantPPR: 0x70},
		{name: "empty", tpr: 0x20, wantPPR: 0x20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus, _, _ := newTestBus(t, 1)
			l := bus.LAPIC(0)
			for _, v := range tc.inISR {
				bus.Deliver(0, false, APICModeFixed, v, false)
				l.Acknowledge(v)
			}
			for _, v := range tc.inIRR {
				bus.Deliver(0, false, APICModeFixed, v, false)
			}
			write32(l, lapicRegTPR, tc.tpr)
			if got := read32(l, lapicRegPPR); got != tc.wantPPR {
				t.Errorf("PPR = %#x, want %#x", got, tc.wantPPR)
			}
			v, ok := l.PendingVector()
			if ok != (tc.want != 0) || v != tc.want {
				t.Errorf("PendingVector = %#x %v, want %#x", v, ok, tc.want)
			}
		})
	}
}

func TestLAPICEOI(t *testing.T) {
	bus, _, _ := newTestBus(t, 1)
	l := bus.LAPIC(0)
	bus.Deliver(0, false, APICModeFixed, 0x30, false)
	l.Acknowledge(0x30)
	bus.Deliver(0, false, APICModeFixed, 0x50, false)
	if v, ok := l.PendingVector(); !ok || v != 0x50 {
		t.Fatalf("0x50 should preempt 0x30 in service, got %#x %v", v, ok)
	}
	l.Acknowledge(0x50)
	if got := read32(l, lapicRegISR+0x10); got != 1<<16 { // vector 0x30 is bit 16 of ISR[1]
		t.Errorf("ISR[1] = %#x", got)
	}
	if got := read32(l, lapicRegISR+0x20); got != 1<<16 { // vector 0x50 is bit 16 of ISR[2]
		t.Errorf("ISR[2] = %#x", got)
	}
	write32(l, lapicRegEOI, 0)
	if read32(l, lapicRegISR+0x20) != 0 || read32(l, lapicRegISR+0x10) == 0 {
		t.Error("first EOI must retire 0x50, the highest in service")
	}
	write32(l, lapicRegEOI, 0)
	if read32(l, lapicRegISR+0x10) != 0 {
		t.Error("second EOI must retire 0x30")
	}
}

func TestLAPICRegisters(t *testing.T) {
	bus, _, _ := newTestBus(t, 3)
	l := bus.LAPIC(2)
	if got := read32(l, lapicRegID); got != 2<<24 {
		t.Errorf("ID = %#x", got)
	}
	if got := read32(l, lapicRegVersion); got != 0x00050014 {
		t.Errorf("version = %#x", got)
	}
	var b [1]byte
	l.Read(lapicRegID+3, b[:])
	if b[0] != 2 {
		t.Errorf("byte read of ID bits 24-31 = %d", b[0])
	}
	write32(l, lapicRegDFR, 0)
	if got := read32(l, lapicRegDFR); got != 0x0FFFFFFF {
		t.Errorf("DFR = %#x, reserved bits must read 1", got)
	}
	l.Write(lapicRegTPR, []byte{0x40}) // 8-bit write: ignored
	if got := read32(l, lapicRegTPR); got != 0 {
		t.Errorf("TPR after byte write = %#x", got)
	}
	write32(l, lapicRegLVTTimer+0x10*lvtLINT0, 0x3F7FF)
	if got := read32(l, lapicRegLVTTimer+0x10*lvtLINT0); got != 0x1A7FF {
		t.Errorf("LINT0 = %#x, want read-only bits clear", got)
	}
	write32(l, lapicRegSVR, 0xFF) // software-disable masks every LVT
	if got := read32(l, lapicRegLVTTimer+0x10*lvtLINT0); got&lvtMasked == 0 {
		t.Errorf("LINT0 = %#x after software disable", got)
	}
	write32(l, lapicRegLVTTimer, 0x40) // and they stay masked
	if got := read32(l, lapicRegLVTTimer); got != 0x10040 {
		t.Errorf("timer LVT = %#x while disabled", got)
	}
	bus.Deliver(2, false, APICModeFixed, 0x40, false)
	if _, ok := l.PendingVector(); ok {
		t.Error("a software-disabled LAPIC accepted a fixed interrupt")
	}
	write32(l, lapicRegSVR, 0x1FF)
	bus.Deliver(2, false, APICModeFixed, 0x05, false) // illegal vector
	write32(l, lapicRegESR, 0)
	if got := read32(l, lapicRegESR); got != esrRecvIllegal {
		t.Errorf("ESR = %#x, want receive-illegal-vector", got)
	}
	l.SetCR8(0x9)
	if got := read32(l, lapicRegTPR); got != 0x90 || l.CR8() != 9 {
		t.Errorf("TPR after CR8=9 is %#x, CR8 %d", got, l.CR8())
	}
}

func TestAPICBusIPI(t *testing.T) {
	const vec = 0x41
	tests := []struct {
		name    string
		icrHigh uint32
		icrLow  uint32
		want    []int // CPUs that receive vec
	}{
		{name: "physical", icrHigh: 2 << 24, icrLow: vec, want: []int{2}},
		{name: "physical broadcast", icrHigh: 0xFF << 24, icrLow: vec, want: []int{0, 1, 2, 3}},
		{name: "physical nobody", icrHigh: 9 << 24, icrLow: vec},
		{name: "logical flat", icrHigh: 0x0A << 24, icrLow: vec | 1<<11, want: []int{1, 3}},
		{name: "lowest priority", icrHigh: 0x0C << 24, icrLow: vec | 1<<11 | APICModeLowestPriority<<8, want: []int{2}},
		{name: "self", icrLow: vec | 1<<18, want: []int{1}},
		{name: "all including self", icrLow: vec | 2<<18, want: []int{0, 1, 2, 3}},
		{name: "all excluding self", icrLow: vec | 3<<18, want: []int{0, 2, 3}},
		{name: "illegal vector", icrHigh: 2 << 24, icrLow: 0x0E},
		{name: "NMI ignored", icrHigh: 2 << 24, icrLow: APICModeNMI << 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus, _, h := newTestBus(t, 4)
			for i := range 4 {
				write32(bus.LAPIC(i), lapicRegLDR, 1<<(24+i)) // flat: one bit per CPU
			}
			src := bus.LAPIC(1)
			write32(src, lapicRegICRHigh, tc.icrHigh)
			write32(src, lapicRegICRLow, tc.icrLow)
			if read32(src, lapicRegICRLow)&(1<<12) != 0 {
				t.Error("ICR delivery status is not idle after the send")
			}
			var got []int
			for i := range 4 {
				if v, ok := bus.LAPIC(i).PendingVector(); ok && v == vec {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("receivers %v, want %v", got, tc.want)
			}
			if !slices.Equal(h.kicks, tc.want) {
				t.Errorf("kicks %v, want %v", h.kicks, tc.want)
			}
		})
	}
}

func TestAPICBusLogicalCluster(t *testing.T) {
	bus, _, _ := newTestBus(t, 3)
	for i, ldr := range []uint32{0x11, 0x12, 0x21} {
		write32(bus.LAPIC(i), lapicRegDFR, 0x0FFFFFFF)
		write32(bus.LAPIC(i), lapicRegLDR, ldr<<24)
	}
	bus.Deliver(0x13, true, APICModeFixed, 0x50, false) // cluster 1, members 1 and 2
	for i, want := range []bool{true, true, false} {
		if _, ok := bus.LAPIC(i).PendingVector(); ok != want {
			t.Errorf("cpu %d pending %v, want %v", i, ok, want)
		}
	}
}

func TestAPICBusINITSIPI(t *testing.T) {
	bus, _, h := newTestBus(t, 2)
	bsp, ap := bus.LAPIC(0), bus.LAPIC(1)
	write32(ap, lapicRegTPR, 0x20) // INIT must reset this
	send := func(low uint32) {
		write32(bsp, lapicRegICRHigh, 1<<24)
		write32(bsp, lapicRegICRLow, low)
	}
	// Linux's wakeup_secondary_cpu_via_init: INIT assert, INIT de-assert,
	// then two STARTUPs.
	send(APICModeINIT<<8 | 1<<14 | 1<<15)
	send(APICModeINIT<<8 | 1<<15)
	send(APICModeStartup<<8 | 0x9A)
	send(APICModeStartup<<8 | 0x9A)
	if !slices.Equal(h.inits, []int{1}) {
		t.Errorf("InitCPU calls %v, want [1] (de-assert ignored)", h.inits)
	}
	if len(h.starts) != 1 || h.starts[0] != [2]int{1, 0x9A} {
		t.Errorf("StartCPU calls %v, want one for cpu 1 vector 0x9A", h.starts)
	}
	if got := read32(ap, lapicRegTPR); got != 0 {
		t.Errorf("TPR after INIT = %#x", got)
	}
	if got := read32(ap, lapicRegSVR); got != 0xFF {
		t.Errorf("SVR after INIT = %#x, want power-on 0xFF", got)
	}
	if got := read32(ap, lapicRegID); got != 1<<24 {
		t.Errorf("ID after INIT = %#x, must be kept", got)
	}
}

func TestAPICBusSnapshotRestore(t *testing.T) {
	bus, clk, _ := newTestBus(t, 2)
	write32(bus.LAPIC(1), lapicRegLVTTimer, 0x33)
	write32(bus.LAPIC(1), lapicRegTimerInitial, 5000)
	bus.Deliver(0, false, APICModeFixed, 0x44, true)
	snap := bus.Snapshot()

	other, _, _ := newTestBus(t, 2)
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if v, ok := other.LAPIC(0).PendingVector(); !ok || v != 0x44 {
		t.Errorf("restored pending vector %#x %v", v, ok)
	}
	// The divide configuration resets to 0, divide by 2.
	if dl, ok := other.NextDeadline(); !ok || dl != clk.now+10000 {
		t.Errorf("restored deadline %d %v, want %d", dl, ok, clk.now+10000)
	}
	small, _, _ := newTestBus(t, 1)
	if err := small.Restore(snap); err == nil {
		t.Error("restoring 2 LAPICs into a 1-CPU bus succeeded")
	}
}

func TestAPICBusTimed(t *testing.T) {
	bus, clk, _ := newTestBus(t, 3)
	write32(bus.LAPIC(0), lapicRegTimerDivide, 0xB)
	write32(bus.LAPIC(2), lapicRegTimerDivide, 0xB)
	write32(bus.LAPIC(0), lapicRegLVTTimer, 0x30)
	write32(bus.LAPIC(2), lapicRegLVTTimer, 0x31)
	write32(bus.LAPIC(0), lapicRegTimerInitial, 5000)
	write32(bus.LAPIC(2), lapicRegTimerInitial, 3000)
	if dl, ok := bus.NextDeadline(); !ok || dl != clk.now+3000 {
		t.Fatalf("earliest deadline %d %v", dl, ok)
	}
	bus.Poll(clk.now + 3000)
	if v, ok := bus.LAPIC(2).PendingVector(); !ok || v != 0x31 {
		t.Errorf("cpu 2 pending %#x %v", v, ok)
	}
	if _, ok := bus.LAPIC(0).PendingVector(); ok {
		t.Error("cpu 0 fired early")
	}
	if dl, ok := bus.NextDeadline(); !ok || dl != clk.now+5000 {
		t.Errorf("next deadline %d %v", dl, ok)
	}
	// APR follows the highest of TPR, ISR and IRR classes (SDM Figure 10-15).
	l := bus.LAPIC(2)
	if got := read32(l, lapicRegAPR); got != 0x30 {
		t.Errorf("APR with 0x31 requested = %#x", got)
	}
	write32(l, lapicRegTPR, 0x45)
	if got := read32(l, lapicRegAPR); got != 0x45 {
		t.Errorf("APR with TPR 0x45 = %#x", got)
	}
}
