package vmm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// TestDevBusMap checks the device table against the port and MMIO map
// the exit dispatch hardcoded before it existed, port by port, and the
// yield port of the reference kernel's busy-waits.
func TestDevBusMap(t *testing.T) {
	for _, disk := range []bool{false, true} {
		m := &Machine{cfg: Config{CPUs: 2}}
		m.clock = newMachineClock(true)
		m.bus = devices.NewAPICBus(2, m.clock, machineHooks{m})
		m.ioapic = devices.NewIOAPIC(m.bus)
		m.pit = devices.NewPIT(m.clock, m.ioapic, pinPIT)
		m.uart = devices.NewUART(&bytes.Buffer{}, m.ioapic, pinUART)
		m.rtc = devices.NewRTC(nil)
		if disk {
			m.blk = devices.NewVirtioBlock(make([]byte, 1<<20), emptyDisk{}, m.ioapic, pinVirtio)
		}
		m.ctl = &controlPage{hooks: machineHooks{m}}
		m.newDevBus()

		for p := 0; p <= 0xFFFF; p++ {
			port := uint16(p)
			var want devices.PIODevice
			switch {
			case port >= 0x3F8 && port <= 0x3FF:
				want = m.uart
			case port >= 0x40 && port <= 0x43, port == 0x61:
				want = pitOnBus{m}
			case port == 0x70 || port == 0x71:
				want = m.rtc
			case port == 0x20 || port == 0x21 || port == 0xA0 || port == 0xA1:
				want = &m.pic
			case port == portKbdCtl:
				want = kbdController{m}
			case port == YieldPort:
				want = yieldPort{}
			case port >= TickPort && port < TickPort+4:
				want = tickPort{m}
			}
			if got := m.devbus.Port(port); got != want {
				t.Errorf("disk %v: port %#x: %T %v, want %T %v", disk, port, got, got, want, want)
			}
		}

		type hit struct {
			cpu  int
			addr uint64
			want devices.MMIODevice
			off  uint64
		}
		var blk devices.MMIODevice
		if disk {
			blk = m.blk
		}
		for _, h := range []hit{
			{0, lapicAddr, lapicOnBus{m, m.bus.LAPIC(0)}, 0},
			{1, lapicAddr + 0x300, lapicOnBus{m, m.bus.LAPIC(1)}, 0x300},
			{1, lapicAddr + 0xFFF, lapicOnBus{m, m.bus.LAPIC(1)}, 0xFFF},
			{0, lapicAddr - 1, nil, 0},
			{0, lapicAddr + 0x1000, nil, 0},
			{1, ioapicAddr, m.ioapic, 0},
			{0, ioapicAddr + 0x10, m.ioapic, 0x10},
			{0, ioapicAddr + 0x1000, nil, 0},
			{0, virtioAddr + 0x70, blk, 0x70},
			{0, virtioAddr + virtioSize, nil, 0},
			{0, virtioAddr - 1, nil, 0},
			{0, 0xFFFFFFFF, nil, 0},
			{0, 0, nil, 0},
		} {
			got, off := m.devbus.MMIO(h.cpu, h.addr)
			if got != h.want || (got != nil && off != h.off) {
				t.Errorf("disk %v: cpu %d mmio %#x: %T at %#x, want %T at %#x", disk, h.cpu, h.addr, got, off, h.want, h.off)
			}
		}
		for cpu := range 2 {
			got, off := m.devbus.MMIO(cpu, controlPageAddr+controlCheckpoint)
			if c, ok := got.(*controlPageCPU); !ok || c.c != m.ctl || c.cpu != cpu || off != controlCheckpoint {
				t.Errorf("cpu %d: control page: %#v at %#x", cpu, got, off)
			}
		}
	}
}

// emptyDisk is a disk of no sectors.
type emptyDisk struct{}

func (emptyDisk) ReadAt(p []byte, off int64) (int, error)  { return 0, nil }
func (emptyDisk) WriteAt(p []byte, off int64) (int, error) { return 0, nil }
func (emptyDisk) Size() int64                              { return 0 }
func (emptyDisk) Flush() error                             { return nil }

// TestTickPort checks the guest clock the reference kernel's tick reads
// (kernel patch 0007): the machine clock in microseconds, 32 bits, low
// bits first, wrapping.
func TestTickPort(t *testing.T) {
	m := &Machine{clock: newMachineClock(true)}
	for _, tc := range []struct {
		vt   int64
		want uint32
	}{
		{0, 0},
		{10_000_999, 10_000},
		{(1<<32 + 5) * 1000, 5},
	} {
		m.clock.vt = tc.vt
		var b [4]byte
		tickPort{m}.In(TickPort, b[:])
		if got := binary.LittleEndian.Uint32(b[:]); got != tc.want {
			t.Errorf("virtual time %d ns: port reads %d, want %d", tc.vt, got, tc.want)
		}
	}
}
