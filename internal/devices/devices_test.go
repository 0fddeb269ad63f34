package devices

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"reflect"
	"testing"
	"time"
)

// Fakes shared by the device tests.

// devClock is a Clock the test sets by hand.
type devClock struct{ now int64 }

func (c *devClock) Now() int64 { return c.now }

// irqRecorder is an IRQLine that records every call.
type irqRecorder struct {
	levels map[int]bool // current level per pin
	rises  map[int]int  // number of low→high transitions per pin
}

func newIRQRecorder() *irqRecorder {
	return &irqRecorder{levels: map[int]bool{}, rises: map[int]int{}}
}

func (r *irqRecorder) SetIRQ(pin int, level bool) {
	if level && !r.levels[pin] {
		r.rises[pin]++
	}
	r.levels[pin] = level
}

// hookRecorder is an APICHooks that records every call.
type hookRecorder struct {
	kicks  []int
	inits  []int
	starts [][2]int // {cpu, vector}
}

func (h *hookRecorder) Kick(cpu int)    { h.kicks = append(h.kicks, cpu) }
func (h *hookRecorder) InitCPU(cpu int) { h.inits = append(h.inits, cpu) }
func (h *hookRecorder) StartCPU(cpu int, vector uint8) {
	h.starts = append(h.starts, [2]int{cpu, int(vector)})
}

// write32 and read32 access a 32-bit MMIO register.
func write32(d MMIODevice, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Write(off, b[:])
}

func read32(d MMIODevice, off uint64) uint32 {
	var b [4]byte
	d.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// outb and inb access an 8-bit port.
func outb(d PIODevice, port uint16, v uint8) { d.Out(port, []byte{v}) }

func inb(d PIODevice, port uint16) uint8 {
	var b [1]byte
	d.In(port, b[:])
	return b[0]
}

// newTestBus returns an APIC bus whose LAPICs are software-enabled.
func newTestBus(t *testing.T, ncpus int) (*APICBus, *devClock, *hookRecorder) {
	t.Helper()
	clk := &devClock{now: 1000}
	h := &hookRecorder{}
	b := NewAPICBus(ncpus, clk, h)
	for i := range ncpus {
		write32(b.LAPIC(i), lapicRegSVR, svrEnabled|0xFF)
	}
	return b, clk, h
}

// TestDeviceStatesGob checks that every device state survives a gob round
// trip, since checkpoints are gob-encoded.
func TestDeviceStatesGob(t *testing.T) {
	bus, clk, _ := newTestBus(t, 2)
	write32(bus.LAPIC(1), lapicRegTimerInitial, 12345)
	bus.Deliver(1, false, APICModeFixed, 0x40, true)
	io := NewIOAPIC(bus)
	write32(io, 0, 0x12)
	write32(io, 0x10, 0x8031)
	io.SetIRQ(1, true)
	pit := NewPIT(clk, newIRQRecorder(), 2)
	outb(pit, 0x43, 0x34)
	outb(pit, 0x40, 0x9b)
	outb(pit, 0x40, 0x2e)
	uart := NewUART(&bytes.Buffer{}, newIRQRecorder(), 4)
	uart.Input([]byte("abc"))
	rtc := NewRTC(time.Now)
	outb(rtc, 0x70, 0x20)
	outb(rtc, 0x71, 0x55)
	mem := make([]byte, 1<<16)
	blk := NewVirtioBlock(mem, &memDisk{data: make([]byte, 4096)}, newIRQRecorder(), 5)
	write32(blk, vmmioQueueNum, 8)

	states := []any{
		bus.Snapshot(), bus.LAPIC(1).Snapshot(), io.Snapshot(), pit.Snapshot(),
		uart.Snapshot(), rtc.Snapshot(), blk.Snapshot(),
		OverlayState{Blocks: map[int64][]byte{3: make([]byte, overlayBlockSize)}},
	}
	for _, s := range states {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(s); err != nil {
			t.Fatalf("%T: encode: %v", s, err)
		}
		got := reflect.New(reflect.TypeOf(s))
		if err := gob.NewDecoder(&buf).Decode(got.Interface()); err != nil {
			t.Fatalf("%T: decode: %v", s, err)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), s) {
			t.Errorf("%T: round trip changed the state:\n got %+v\nwant %+v", s, got.Elem().Interface(), s)
		}
	}
}
