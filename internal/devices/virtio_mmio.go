package devices

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// virtio-mmio transport, version 2 ("modern"), with split virtqueues
// (Virtual I/O Device (VIRTIO) Version 1.1, §4.2 and §2.6).
//
// The guest drives the device through 32-bit registers in a small MMIO
// window; requests travel through rings in guest memory, which this code
// reads and writes directly in the guest-memory slice. Every guest address
// and index is bounds-checked, and every ring field is read once into a
// local before use, so a malicious or buggy guest can at worst break its
// own device: the transport then sets DEVICE_NEEDS_RESET (§2.1.2) and
// ignores the queues until the driver resets it.
//
// Linux finds the device through "virtio_mmio.device=<size>@<addr>:<irq>"
// on the kernel command line (there is no device tree or ACPI here).

// Register offsets (§4.2.2, Table 4.1).
const (
	vmmioMagic             = 0x000
	vmmioVersion           = 0x004
	vmmioDeviceID          = 0x008
	vmmioVendorID          = 0x00c
	vmmioDeviceFeatures    = 0x010
	vmmioDeviceFeaturesSel = 0x014
	vmmioDriverFeatures    = 0x020
	vmmioDriverFeaturesSel = 0x024
	vmmioQueueSel          = 0x030
	vmmioQueueNumMax       = 0x034
	vmmioQueueNum          = 0x038
	vmmioQueueReady        = 0x044
	vmmioQueueNotify       = 0x050
	vmmioInterruptStatus   = 0x060
	vmmioInterruptACK      = 0x064
	vmmioStatus            = 0x070
	vmmioQueueDescLow      = 0x080
	vmmioQueueDescHigh     = 0x084
	vmmioQueueDriverLow    = 0x090
	vmmioQueueDriverHigh   = 0x094
	vmmioQueueDeviceLow    = 0x0a0
	vmmioQueueDeviceHigh   = 0x0a4
	vmmioSHMLenLow         = 0x0b0
	vmmioSHMBaseHigh       = 0x0bc
	vmmioConfigGeneration  = 0x0fc
	vmmioConfig            = 0x100
)

const (
	virtioMagic    = 0x74726976 // "virt"
	virtioVendorID = 0x534D5341 // "ASMS" little-endian: samsara's own
	// VirtioMMIOSize is the size of the register window to map.
	VirtioMMIOSize = 0x200

	// virtioQueueNumMax is the largest ring the device accepts: 256
	// descriptors, enough to keep a block device busy.
	virtioQueueNumMax = 256

	virtioFVersion1 = uint64(1) << 32 // VIRTIO_F_VERSION_1: modern device

	// Device status bits (§2.1).
	virtioStatusAcknowledge = 1
	virtioStatusDriver      = 2
	virtioStatusDriverOK    = 4
	virtioStatusFeaturesOK  = 8
	virtioStatusNeedsReset  = 0x40
	virtioStatusFailed      = 0x80

	// InterruptStatus bits (§4.2.2).
	virtioIntUsedBuffer   = 1 // a used buffer notification
	virtioIntConfigChange = 2 // configuration (or device status) change

	// Descriptor flags (§2.6.5).
	vringDescFNext  = 1
	vringDescFWrite = 2
	// vringAvailFNoInterrupt: the driver does not want used-buffer
	// notifications (§2.6.7.1, without VIRTIO_F_EVENT_IDX).
	vringAvailFNoInterrupt = 1
)

// errBadRing is a guest error in ring or descriptor contents.
var errBadRing = errors.New("virtio: malformed ring or descriptor")

// virtioDevice is a device type behind the transport.
type virtioDevice interface {
	// deviceID is the virtio device type (§5).
	deviceID() uint32
	// features is the feature bits the device offers (incl. transport bits).
	features() uint64
	// config is the device configuration space (§4.2.2, offset 0x100).
	config() []byte
	// handle executes one request: readable and writable are the chain's
	// device-readable and device-writable buffers, as slices of guest
	// memory. It returns the number of bytes written into writable, or an
	// error if the request is too malformed to answer at all.
	handle(readable, writable [][]byte) (uint32, error)
}

// VirtioQueueState is the transport's state for one virtqueue.
type VirtioQueueState struct {
	Num       uint32 // queue size chosen by the driver (power of 2, ≤ max)
	Ready     bool   // QueueReady: the driver finished setting the queue up
	Desc      uint64 // guest-physical address of the descriptor table
	Driver    uint64 // guest-physical address of the available ring
	Device    uint64 // guest-physical address of the used ring
	LastAvail uint16 // next available-ring index the device will consume
	UsedIdx   uint16 // the device's used index (the guest's copy is not trusted)
}

// VirtioState is the transport's complete state, gob-encodable.
type VirtioState struct {
	Status            uint32             // device status (§2.1)
	DeviceFeaturesSel uint32             // which 32-bit half DeviceFeatures shows
	DriverFeaturesSel uint32             // which 32-bit half DriverFeatures writes
	DriverFeatures    uint64             // features the driver accepted
	QueueSel          uint32             // queue the Queue* registers address
	InterruptStatus   uint32             // pending interrupt reasons
	ConfigGeneration  uint32             // bumped on config changes (never, for now)
	Queues            []VirtioQueueState // one per virtqueue
}

// VirtioMMIO is a virtio-mmio device: the transport and its device type.
type VirtioMMIO struct {
	mem []byte       // guest memory, indexed by guest-physical address
	dev virtioDevice // the device type (block, …)
	irq IRQLine      // interrupt controller input
	pin int          // irq's pin
	s   VirtioState  // all guest-visible transport state
	// onDMA, when set, is told of every write of the device into guest
	// memory (samsara trace's DMA events), with the bytes written.
	onDMA func(pa uint64, data []byte)
}

// ObserveDMA sets f to be told of every write of the device into guest
// memory, in the order it makes them; nil stops it.
func (v *VirtioMMIO) ObserveDMA(f func(pa uint64, data []byte)) { v.onDMA = f }

// dma reports the n bytes at guest-physical pa to the DMA observer.
func (v *VirtioMMIO) dma(pa, n uint64) {
	if v.onDMA != nil && n > 0 {
		v.onDMA(pa, v.mem[pa:pa+n])
	}
}

// dmaBuffers reports the first n bytes the device wrote into writable, a
// chain's device-writable buffers (slices of v.mem: a buffer's
// guest-physical address is how far into v.mem it starts, which its
// capacity tells, as walkChain slices without a capacity bound).
func (v *VirtioMMIO) dmaBuffers(writable [][]byte, n uint32) {
	if v.onDMA == nil {
		return
	}
	left := uint64(n)
	for _, b := range writable {
		k := min(uint64(len(b)), left)
		if k == 0 {
			break
		}
		v.dma(uint64(cap(v.mem)-cap(b)), k)
		left -= k
	}
}

func newVirtioMMIO(mem []byte, dev virtioDevice, nqueues int, irq IRQLine, pin int) *VirtioMMIO {
	v := &VirtioMMIO{mem: mem, dev: dev, irq: irq, pin: pin}
	v.s.Queues = make([]VirtioQueueState, nqueues)
	return v
}

// reset returns the transport to its initial state (status 0 written).
func (v *VirtioMMIO) reset() {
	n := len(v.s.Queues)
	gen := v.s.ConfigGeneration
	v.s = VirtioState{ConfigGeneration: gen, Queues: make([]VirtioQueueState, n)}
}

// queue returns the selected queue, or nil if QueueSel is out of range.
func (v *VirtioMMIO) queue() *VirtioQueueState {
	if v.s.QueueSel >= uint32(len(v.s.Queues)) {
		return nil
	}
	return &v.s.Queues[v.s.QueueSel]
}

// Read implements MMIODevice. Control registers need aligned 32-bit reads
// (§4.2.2.2); other reads of them return zeros. The config space may be
// read at any width.
func (v *VirtioMMIO) Read(off uint64, data []byte) {
	clear(data)
	if off >= vmmioConfig {
		cfg := v.dev.config()
		if o := off - vmmioConfig; o < uint64(len(cfg)) {
			copy(data, cfg[o:])
		}
		return
	}
	if len(data) != 4 || off&3 != 0 {
		return
	}
	binary.LittleEndian.PutUint32(data, v.readReg(off))
}

func (v *VirtioMMIO) readReg(off uint64) uint32 {
	q := v.queue()
	switch off {
	case vmmioMagic:
		return virtioMagic
	case vmmioVersion:
		return 2
	case vmmioDeviceID:
		return v.dev.deviceID()
	case vmmioVendorID:
		return virtioVendorID
	case vmmioDeviceFeatures:
		if v.s.DeviceFeaturesSel > 1 {
			return 0
		}
		return uint32(v.dev.features() >> (32 * v.s.DeviceFeaturesSel))
	case vmmioQueueNumMax:
		if q == nil {
			return 0 // queue not available
		}
		return virtioQueueNumMax
	case vmmioQueueReady:
		if q != nil && q.Ready {
			return 1
		}
	case vmmioInterruptStatus:
		return v.s.InterruptStatus
	case vmmioStatus:
		return v.s.Status
	case vmmioConfigGeneration:
		return v.s.ConfigGeneration
	}
	if off >= vmmioSHMLenLow && off <= vmmioSHMBaseHigh {
		return 0xFFFFFFFF // no shared memory regions (§4.2.2: reads -1)
	}
	return 0 // write-only and reserved registers
}

// Write implements MMIODevice; only aligned 32-bit writes are honoured,
// and the config space is read-only (no writable fields are offered).
func (v *VirtioMMIO) Write(off uint64, data []byte) {
	if off >= vmmioConfig || len(data) != 4 || off&3 != 0 {
		return
	}
	v.writeReg(off, binary.LittleEndian.Uint32(data))
}

func (v *VirtioMMIO) writeReg(off uint64, val uint32) {
	q := v.queue()
	switch off {
	case vmmioDeviceFeaturesSel:
		v.s.DeviceFeaturesSel = val
	case vmmioDriverFeaturesSel:
		v.s.DriverFeaturesSel = val
	case vmmioDriverFeatures:
		switch v.s.DriverFeaturesSel {
		case 0:
			v.s.DriverFeatures = v.s.DriverFeatures&^0xFFFFFFFF | uint64(val)
		case 1:
			v.s.DriverFeatures = v.s.DriverFeatures&0xFFFFFFFF | uint64(val)<<32
		}
	case vmmioQueueSel:
		v.s.QueueSel = val
	case vmmioQueueNotify:
		if val < uint32(len(v.s.Queues)) {
			v.notify(int(val))
		}
	case vmmioInterruptACK:
		v.s.InterruptStatus &^= val
	case vmmioStatus:
		v.writeStatus(val)
	}
	// The queue layout may only change while the queue is not ready
	// (§4.2.3.2); writes to a live queue are ignored.
	if q == nil || (q.Ready && off != vmmioQueueReady) {
		return
	}
	switch off {
	case vmmioQueueNum:
		q.Num = val
	case vmmioQueueReady:
		v.setReady(q, val == 1)
	case vmmioQueueDescLow:
		q.Desc = q.Desc&^0xFFFFFFFF | uint64(val)
	case vmmioQueueDescHigh:
		q.Desc = q.Desc&0xFFFFFFFF | uint64(val)<<32
	case vmmioQueueDriverLow:
		q.Driver = q.Driver&^0xFFFFFFFF | uint64(val)
	case vmmioQueueDriverHigh:
		q.Driver = q.Driver&0xFFFFFFFF | uint64(val)<<32
	case vmmioQueueDeviceLow:
		q.Device = q.Device&^0xFFFFFFFF | uint64(val)
	case vmmioQueueDeviceHigh:
		q.Device = q.Device&0xFFFFFFFF | uint64(val)<<32
	}
}

// writeStatus handles the driver's status writes (§3.1.1 initialization).
func (v *VirtioMMIO) writeStatus(val uint32) {
	if val == 0 {
		v.reset()
		return
	}
	if val&virtioStatusFeaturesOK != 0 && v.s.Status&virtioStatusFeaturesOK == 0 {
		// Accept the features only if they are a subset of ours and
		// include VERSION_1, mandatory for a version-2 transport; else
		// FEATURES_OK stays clear, which the driver reads as refusal.
		f := v.s.DriverFeatures
		if f&^v.dev.features() != 0 || f&virtioFVersion1 == 0 {
			val &^= virtioStatusFeaturesOK
		}
	}
	v.s.Status = val&^virtioStatusNeedsReset | v.s.Status&virtioStatusNeedsReset
}

// setReady enables or disables a queue. Enabling validates the layout:
// a power-of-two size up to the maximum and rings inside guest memory with
// the alignment §2.6 requires (16, 2 and 4 bytes).
func (v *VirtioMMIO) setReady(q *VirtioQueueState, ready bool) {
	if !ready || q.Ready {
		q.Ready = ready
		return
	}
	n := uint64(q.Num)
	ok := n != 0 && n <= virtioQueueNumMax && n&(n-1) == 0 &&
		q.Desc%16 == 0 && q.Driver%2 == 0 && q.Device%4 == 0 &&
		v.inMem(q.Desc, 16*n) && v.inMem(q.Driver, 6+2*n) && v.inMem(q.Device, 6+8*n)
	if !ok {
		v.fail()
		return
	}
	q.Ready, q.LastAvail, q.UsedIdx = true, 0, 0
}

// inMem reports whether [addr, addr+n) lies in guest memory.
func (v *VirtioMMIO) inMem(addr, n uint64) bool {
	end, carry := bits.Add64(addr, n, 0)
	return carry == 0 && end <= uint64(len(v.mem))
}

// fail marks the device broken after a guest error (§2.1.2): it stops
// processing until reset and notifies the driver of the status change.
func (v *VirtioMMIO) fail() {
	v.s.Status |= virtioStatusNeedsReset
	v.interrupt(virtioIntConfigChange)
}

func (v *VirtioMMIO) interrupt(reason uint32) {
	v.s.InterruptStatus |= reason
	v.irq.SetIRQ(v.pin, true)
	v.irq.SetIRQ(v.pin, false)
}

func (v *VirtioMMIO) read16(addr uint64) (uint16, bool) {
	if !v.inMem(addr, 2) {
		return 0, false
	}
	return binary.LittleEndian.Uint16(v.mem[addr:]), true
}

// notify processes every request the driver made available on queue qi
// (§2.6.13 in reverse: the device side of the split ring).
func (v *VirtioMMIO) notify(qi int) {
	q := &v.s.Queues[qi]
	if !q.Ready || v.s.Status&virtioStatusDriverOK == 0 || v.s.Status&virtioStatusNeedsReset != 0 {
		return
	}
	flags, ok1 := v.read16(q.Driver)
	availIdx, ok2 := v.read16(q.Driver + 2)
	if !ok1 || !ok2 || availIdx-q.LastAvail > uint16(q.Num) {
		// The driver cannot have more than Num requests outstanding.
		v.fail()
		return
	}
	done := false
	for q.LastAvail != availIdx {
		head, ok := v.read16(q.Driver + 4 + 2*uint64(q.LastAvail%uint16(q.Num)))
		if !ok {
			v.fail()
			return
		}
		readable, writable, err := v.walkChain(q, head)
		var n uint32
		if err == nil {
			n, err = v.dev.handle(readable, writable)
		}
		if err != nil {
			v.fail()
			return
		}
		// Used element {id, len}, then the used index: the element must be
		// visible before the index that publishes it. Guest vCPUs run
		// concurrently, and x86 stores are not reordered with each other.
		v.dmaBuffers(writable, n)
		elem := q.Device + 4 + 8*uint64(q.UsedIdx%uint16(q.Num))
		binary.LittleEndian.PutUint32(v.mem[elem:], uint32(head))
		binary.LittleEndian.PutUint32(v.mem[elem+4:], n)
		v.dma(elem, 8)
		q.UsedIdx++
		binary.LittleEndian.PutUint16(v.mem[q.Device+2:], q.UsedIdx)
		v.dma(q.Device+2, 2)
		q.LastAvail++
		done = true
	}
	if done && flags&vringAvailFNoInterrupt == 0 {
		v.interrupt(virtioIntUsedBuffer)
	}
}

// walkChain follows the descriptor chain starting at head and returns its
// buffers as slices of guest memory, split into device-readable ones and
// the device-writable ones that must follow them (§2.6.4.2).
func (v *VirtioMMIO) walkChain(q *VirtioQueueState, head uint16) (readable, writable [][]byte, err error) {
	idx := head
	for count := uint32(0); ; count++ {
		// A chain longer than the ring must contain a loop (§2.6.5.3.1).
		if uint32(idx) >= q.Num || count >= q.Num {
			return nil, nil, errBadRing
		}
		d := v.mem[q.Desc+16*uint64(idx):][:16] // in memory: checked by setReady
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if !v.inMem(addr, uint64(length)) {
			return nil, nil, fmt.Errorf("%w: buffer %#x+%#x outside guest memory", errBadRing, addr, length)
		}
		buf := v.mem[addr : addr+uint64(length)]
		if flags&vringDescFWrite != 0 {
			writable = append(writable, buf)
		} else if len(writable) > 0 {
			return nil, nil, fmt.Errorf("%w: readable buffer after a writable one", errBadRing)
		} else {
			readable = append(readable, buf)
		}
		if flags&vringDescFNext == 0 {
			return readable, writable, nil
		}
		idx = next
	}
}

// Snapshot returns the transport's state (queue slice copied).
func (v *VirtioMMIO) Snapshot() VirtioState {
	s := v.s
	s.Queues = append([]VirtioQueueState(nil), v.s.Queues...)
	return s
}

// Restore replaces the transport's state. Ready queues are validated
// against guest memory, since a snapshot is untrusted input.
func (v *VirtioMMIO) Restore(s VirtioState) error {
	if len(s.Queues) != len(v.s.Queues) {
		return fmt.Errorf("virtio-mmio: snapshot has %d queues, device has %d", len(s.Queues), len(v.s.Queues))
	}
	for i, q := range s.Queues {
		n := uint64(q.Num)
		if q.Ready && (n == 0 || n > virtioQueueNumMax || n&(n-1) != 0 ||
			!v.inMem(q.Desc, 16*n) || !v.inMem(q.Driver, 6+2*n) || !v.inMem(q.Device, 6+8*n)) {
			return fmt.Errorf("virtio-mmio: queue %d layout is outside guest memory", i)
		}
	}
	s.Queues = append([]VirtioQueueState(nil), s.Queues...)
	v.s = s
	return nil
}
