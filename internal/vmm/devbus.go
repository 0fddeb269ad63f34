package vmm

import (
	"encoding/binary"

	"github.com/samsara-vmm/samsara/internal/devices"
)

// The machine's port and MMIO map: every range a guest access can reach
// a device through, in one table (devices.Bus) that the exit dispatch
// (exits.go) looks up. Busiest ranges first: the lookup is a linear scan.
//
// Ports that no range covers read as all ones (absent ISA devices float
// high; Linux's probe_8259A relies on it) and ignore writes; so do MMIO
// addresses outside every range and outside RAM (MMIO writes there are
// dropped).

// Legacy ports and the ranges of the devices behind them.
const (
	portPostCode = 0x80 // POST diagnostic port, used by Linux as an I/O delay: no device
	portKbdData  = 0x60 // 8042 data: no device
	portKbdCtl   = 0x64 // 8042 controller: 0xFE written here pulses CPU reset
	kbdCmdReset  = 0xFE
	portPIT      = 0x40 // 8254 counters 0-2 and the control word, 4 ports
	portPITGate  = 0x61 // the speaker/gate port (counter 2's gate and output)
	portRTC      = 0x70 // MC146818 index and data, 2 ports
	portPICM     = 0x20 // master 8259A, 2 ports
	portPICS     = 0xA0 // slave 8259A, 2 ports
	lapicSize    = 0x1000
	ioapicSize   = 0x1000
)

// newDevBus builds m.devbus from the devices New created.
func (m *Machine) newDevBus() {
	b := &devices.Bus{}
	b.AddPorts(devices.COM1Base, 8, m.uart)
	b.AddPorts(portPIT, 4, pitOnBus{m})
	b.AddPorts(portPITGate, 1, pitOnBus{m})
	b.AddPorts(portRTC, 2, m.rtc)
	b.AddPorts(portPICM, 2, &m.pic)
	b.AddPorts(portPICS, 2, &m.pic)
	b.AddPorts(portKbdCtl, 1, kbdController{m})
	b.AddPorts(YieldPort, 1, yieldPort{})
	b.AddPorts(TickPort, 4, tickPort{m})

	lapics := make([]devices.MMIODevice, m.cfg.CPUs)
	ctl := make([]devices.MMIODevice, m.cfg.CPUs)
	for i := range lapics {
		lapics[i] = lapicOnBus{m, m.bus.LAPIC(i)}
		ctl[i] = &controlPageCPU{m.ctl, i}
	}
	b.AddMMIOPerCPU(lapicAddr, lapicSize, func(cpu int) devices.MMIODevice { return lapics[cpu] })
	b.AddMMIO(ioapicAddr, ioapicSize, m.ioapic)
	if m.blk != nil {
		b.AddMMIO(virtioAddr, virtioSize, m.blk)
	}
	b.AddMMIOPerCPU(controlPageAddr, controlPageSize, func(cpu int) devices.MMIODevice { return ctl[cpu] })
	m.devbus = b
}

// yieldPort takes the guest kernel's busy-wait announcements (YieldPort):
// the exit itself is the message (internal/session ends the chunk there);
// reads return zero.
type yieldPort struct{}

func (yieldPort) In(port uint16, data []byte)  { clear(data) }
func (yieldPort) Out(port uint16, data []byte) {}

// tickPort is the guest clock for the reference kernel's tick (TickPort):
// a 32-bit read returns the machine clock in microseconds, the low 32
// bits; it is virtual time when recording or replaying, so its value at
// the reading exit is the same in both. Writes are ignored.
type tickPort struct{ m *Machine }

func (t tickPort) In(port uint16, data []byte) {
	us := uint32(t.m.clock.Now() / 1000) // m.mu is held (portIn)
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], us)
	clear(data)
	if off := int(port - TickPort); off < 4 {
		copy(data, b[off:])
	}
}

func (tickPort) Out(port uint16, data []byte) {}

// pitOnBus is the PIT as the guest reaches it: a write can arm or rearm a
// counter, so the timer loop is woken to re-read the deadlines.
type pitOnBus struct{ m *Machine }

func (p pitOnBus) In(port uint16, data []byte) { p.m.pit.In(port, data) }

func (p pitOnBus) Out(port uint16, data []byte) {
	p.m.pit.Out(port, data)
	p.m.pokeTimers()
}

// lapicOnBus is one vCPU's LAPIC as the guest reaches it: any access can
// arm the timer or (a read of the current count) depend on it, so the
// timer loop is woken after it, as for the PIT.
type lapicOnBus struct {
	m *Machine       // whose timer loop to wake
	l *devices.LAPIC // the vCPU's LAPIC
}

func (a lapicOnBus) Read(off uint64, data []byte) {
	a.l.Read(off, data)
	a.m.pokeTimers()
}

func (a lapicOnBus) Write(off uint64, data []byte) {
	a.l.Write(off, data)
	a.m.pokeTimers()
}

// kbdController is the 8042 keyboard controller's command/status port,
// kept in vmm because its one command, CPU reset, stops the machine.
type kbdController struct{ m *Machine }

// In reads the status: input buffer empty, so Linux's kb_wait() before a
// keyboard-controller reset does not spin.
func (k kbdController) In(port uint16, data []byte) { clear(data) }

// Out pulses CPU reset on kbdCmdReset and ignores other commands.
func (k kbdController) Out(port uint16, data []byte) {
	if data[0] == kbdCmdReset {
		k.m.stop(-1, ErrGuestReset)
	}
}

// controlPageCPU is the control page as vCPU cpu reaches it: a checkpoint
// request names the vCPU that made it.
type controlPageCPU struct {
	c   *controlPage // the page
	cpu int          // the accessing vCPU
}

func (c *controlPageCPU) Read(off uint64, data []byte)  { c.c.read(off, data) }
func (c *controlPageCPU) Write(off uint64, data []byte) { c.c.write(c.cpu, off, data) }
