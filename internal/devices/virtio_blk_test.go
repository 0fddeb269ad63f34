package devices

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// memDisk is an in-memory BlockBackend.
type memDisk struct {
	data    []byte // contents
	flushes int    // Flush calls
}

func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(d.data)) {
		return 0, io.EOF
	}
	n := copy(p, d.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.data)) {
		return 0, io.ErrShortWrite
	}
	return copy(d.data[off:], p), nil
}

func (d *memDisk) Size() int64  { return int64(len(d.data)) }
func (d *memDisk) Flush() error { d.flushes++; return nil }

// Guest-physical layout of the test queue and buffers.
const (
	vqDesc   = 0x1000
	vqAvail  = 0x2000
	vqUsed   = 0x3000
	vqNum    = 8
	vqHeader = 0x10000 // request header
	vqData   = 0x11000 // data buffers
	vqStatus = 0x14000 // status byte
	vqMem    = 0x20000 // guest memory size
)

// vdesc is one descriptor of a request: a buffer and whether the device
// writes it.
type vdesc struct {
	addr  uint64
	len   uint32
	write bool
}

type virtioHarness struct {
	t        *testing.T
	mem      []byte
	disk     *memDisk
	irq      *irqRecorder
	dev      *VirtioBlock
	availIdx uint16 // driver's avail index
	next     uint16 // next free descriptor
}

func newVirtioHarness(t *testing.T) *virtioHarness {
	t.Helper()
	h := &virtioHarness{t: t, mem: make([]byte, vqMem), disk: &memDisk{data: make([]byte, 64<<10)}, irq: newIRQRecorder()}
	for i := range h.disk.data {
		h.disk.data[i] = byte(i*7 + i>>9)
	}
	h.dev = NewVirtioBlock(h.mem, h.disk, h.irq, 5)
	h.setUp()
	return h
}

// setUp is the driver's initialization sequence (VIRTIO 1.1 §3.1.1).
func (h *virtioHarness) setUp() {
	t, d := h.t, h.dev
	t.Helper()
	if read32(d, vmmioMagic) != 0x74726976 || read32(d, vmmioVersion) != 2 || read32(d, vmmioDeviceID) != 2 {
		t.Fatal("bad identification registers")
	}
	write32(d, vmmioStatus, 0)
	write32(d, vmmioStatus, virtioStatusAcknowledge|virtioStatusDriver)
	write32(d, vmmioDeviceFeaturesSel, 1)
	if read32(d, vmmioDeviceFeatures)&1 == 0 {
		t.Fatal("VIRTIO_F_VERSION_1 not offered")
	}
	write32(d, vmmioDeviceFeaturesSel, 0)
	if f := read32(d, vmmioDeviceFeatures); f&(1<<9) == 0 {
		t.Fatalf("FLUSH not offered: %#x", f)
	}
	write32(d, vmmioDriverFeaturesSel, 0)
	write32(d, vmmioDriverFeatures, 1<<9)
	write32(d, vmmioDriverFeaturesSel, 1)
	write32(d, vmmioDriverFeatures, 1)
	write32(d, vmmioStatus, virtioStatusAcknowledge|virtioStatusDriver|virtioStatusFeaturesOK)
	if read32(d, vmmioStatus)&virtioStatusFeaturesOK == 0 {
		t.Fatal("features refused")
	}
	write32(d, vmmioQueueSel, 0)
	if read32(d, vmmioQueueReady) != 0 || read32(d, vmmioQueueNumMax) != 256 {
		t.Fatal("bad queue 0 state")
	}
	write32(d, vmmioQueueNum, vqNum)
	write32(d, vmmioQueueDescLow, vqDesc)
	write32(d, vmmioQueueDriverLow, vqAvail)
	write32(d, vmmioQueueDeviceLow, vqUsed)
	write32(d, vmmioQueueReady, 1)
	write32(d, vmmioStatus, virtioStatusAcknowledge|virtioStatusDriver|virtioStatusFeaturesOK|virtioStatusDriverOK)
	if read32(d, vmmioStatus) != 0x0F {
		t.Fatalf("status %#x after setup", read32(d, vmmioStatus))
	}
	clear(h.mem[vqDesc : vqUsed+0x1000])
	h.availIdx, h.next = 0, 0
}

func (h *virtioHarness) writeDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	d := h.mem[vqDesc+16*int(i):]
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// publish puts head in the avail ring and notifies the device.
func (h *virtioHarness) publish(head uint16) {
	binary.LittleEndian.PutUint16(h.mem[vqAvail+4+2*int(h.availIdx%vqNum):], head)
	h.availIdx++
	binary.LittleEndian.PutUint16(h.mem[vqAvail+2:], h.availIdx)
	write32(h.dev, vmmioQueueNotify, 0)
}

// submit chains descs and publishes the chain.
func (h *virtioHarness) submit(descs []vdesc) uint16 {
	head := h.next
	for i, d := range descs {
		idx := (head + uint16(i)) % vqNum
		var flags uint16
		if d.write {
			flags |= vringDescFWrite
		}
		if i < len(descs)-1 {
			flags |= vringDescFNext
		}
		h.writeDesc(idx, d.addr, d.len, flags, (idx+1)%vqNum)
	}
	h.next = (head + uint16(len(descs))) % vqNum
	h.publish(head)
	return head
}

func (h *virtioHarness) usedIdx() uint16 { return binary.LittleEndian.Uint16(h.mem[vqUsed+2:]) }

func (h *virtioHarness) usedElem(i uint16) (id, length uint32) {
	e := h.mem[vqUsed+4+8*int(i%vqNum):]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

func (h *virtioHarness) header(typ uint32, sector uint64) {
	binary.LittleEndian.PutUint32(h.mem[vqHeader:], typ)
	binary.LittleEndian.PutUint32(h.mem[vqHeader+4:], 0)
	binary.LittleEndian.PutUint64(h.mem[vqHeader+8:], sector)
}

func TestVirtioBlockRequests(t *testing.T) {
	hdr := vdesc{vqHeader, 16, false}
	status := vdesc{vqStatus, 1, true}
	tests := []struct {
		name       string
		typ        uint32
		sector     uint64
		fill       byte // written to the data area before submitting
		descs      []vdesc
		wantStatus uint8
		wantLen    uint32
		check      func(t *testing.T, h *virtioHarness)
	}{
		{
			name: "read two segments", typ: virtioBlkTIn, sector: 2,
			descs:      []vdesc{hdr, {vqData, 512, true}, {vqData + 0x1000, 512, true}, status},
			wantStatus: virtioBlkSOK, wantLen: 1025,
			check: func(t *testing.T, h *virtioHarness) {
				if !bytes.Equal(h.mem[vqData:vqData+512], h.disk.data[1024:1536]) ||
					!bytes.Equal(h.mem[vqData+0x1000:vqData+0x1200], h.disk.data[1536:2048]) {
					t.Error("read data does not match the disk")
				}
			},
		},
		{
			name: "write", typ: virtioBlkTOut, sector: 3, fill: 0xAB,
			descs:      []vdesc{hdr, {vqData, 1024, false}, status},
			wantStatus: virtioBlkSOK, wantLen: 1,
			check: func(t *testing.T, h *virtioHarness) {
				if !bytes.Equal(h.disk.data[1536:2560], bytes.Repeat([]byte{0xAB}, 1024)) {
					t.Error("disk not written")
				}
				if h.disk.data[2560] == 0xAB || h.disk.data[1535] == 0xAB {
					t.Error("write spilled outside its sectors")
				}
			},
		},
		{
			name: "header split over two descriptors", typ: virtioBlkTIn, sector: 0,
			descs:      []vdesc{{vqHeader, 5, false}, {vqHeader + 5, 11, false}, {vqData, 512, true}, status},
			wantStatus: virtioBlkSOK, wantLen: 513,
		},
		{
			name: "data and status in one buffer", typ: virtioBlkTIn, sector: 1,
			descs:      []vdesc{hdr, {vqData, 513, true}},
			wantStatus: virtioBlkSOK, wantLen: 513,
			check: func(t *testing.T, h *virtioHarness) {
				if h.mem[vqData+512] != virtioBlkSOK || !bytes.Equal(h.mem[vqData:vqData+512], h.disk.data[512:1024]) {
					t.Error("combined data/status buffer wrong")
				}
			},
		},
		{
			name: "flush", typ: virtioBlkTFlush,
			descs:      []vdesc{hdr, status},
			wantStatus: virtioBlkSOK, wantLen: 1,
			check: func(t *testing.T, h *virtioHarness) {
				if h.disk.flushes != 1 {
					t.Errorf("%d flushes", h.disk.flushes)
				}
			},
		},
		{
			name: "get id", typ: virtioBlkTGetID,
			descs:      []vdesc{hdr, {vqData, 20, true}, status},
			wantStatus: virtioBlkSOK, wantLen: 21,
			check: func(t *testing.T, h *virtioHarness) {
				want := append([]byte("samsara-disk"), make([]byte, 8)...)
				if !bytes.Equal(h.mem[vqData:vqData+20], want) {
					t.Errorf("id %q", h.mem[vqData:vqData+20])
				}
			},
		},
		{
			name: "unsupported type", typ: 99,
			descs:      []vdesc{hdr, status},
			wantStatus: virtioBlkSUnsupp, wantLen: 1,
		},
		{
			name: "read past the end", typ: virtioBlkTIn, sector: 127,
			descs:      []vdesc{hdr, {vqData, 1024, true}, status},
			wantStatus: virtioBlkSIOErr, wantLen: 1,
		},
		{
			name: "huge sector", typ: virtioBlkTOut, sector: 1 << 62,
			descs:      []vdesc{hdr, {vqData, 512, false}, status},
			wantStatus: virtioBlkSIOErr, wantLen: 1,
		},
		{
			name: "short header", typ: virtioBlkTIn,
			descs:      []vdesc{{vqHeader, 8, false}, status},
			wantStatus: virtioBlkSIOErr, wantLen: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newVirtioHarness(t)
			h.header(tc.typ, tc.sector)
			for i := vqData; i < vqStatus; i++ {
				h.mem[i] = tc.fill
			}
			h.mem[vqStatus] = 0xFF
			for round := range 2 { // twice: the second request reuses ring slots
				head := h.submit(tc.descs)
				if h.usedIdx() != uint16(round+1) {
					t.Fatalf("round %d: used idx %d", round, h.usedIdx())
				}
				id, n := h.usedElem(uint16(round))
				if id != uint32(head) || n != tc.wantLen {
					t.Errorf("round %d: used {id %d, len %d}, want {%d, %d}", round, id, n, head, tc.wantLen)
				}
				last := tc.descs[len(tc.descs)-1]
				if got := h.mem[last.addr+uint64(last.len)-1]; got != tc.wantStatus {
					t.Errorf("round %d: status %d, want %d", round, got, tc.wantStatus)
				}
				if h.irq.rises[5] != round+1 || read32(h.dev, vmmioInterruptStatus) != virtioIntUsedBuffer {
					t.Errorf("round %d: %d interrupts, status %#x", round, h.irq.rises[5], read32(h.dev, vmmioInterruptStatus))
				}
				write32(h.dev, vmmioInterruptACK, virtioIntUsedBuffer)
				if tc.check != nil && round == 0 {
					tc.check(t, h)
				}
			}
		})
	}
}

// TestVirtioBlockBadGuest feeds malformed rings: the device must not panic,
// must set DEVICE_NEEDS_RESET, and must work again after a reset.
func TestVirtioBlockBadGuest(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *virtioHarness)
	}{
		{"buffer outside memory", func(h *virtioHarness) {
			h.writeDesc(0, vqMem-4, 16, 0, 0)
			h.publish(0)
		}},
		{"address overflow", func(h *virtioHarness) {
			h.writeDesc(0, ^uint64(0)-3, 16, 0, 0)
			h.publish(0)
		}},
		{"descriptor loop", func(h *virtioHarness) {
			h.writeDesc(0, vqHeader, 16, vringDescFNext, 1)
			h.writeDesc(1, vqHeader, 16, vringDescFNext, 0)
			h.publish(0)
		}},
		{"next out of range", func(h *virtioHarness) {
			h.writeDesc(0, vqHeader, 16, vringDescFNext, 100)
			h.publish(0)
		}},
		{"readable after writable", func(h *virtioHarness) {
			h.writeDesc(0, vqStatus, 1, vringDescFNext|vringDescFWrite, 1)
			h.writeDesc(1, vqHeader, 16, 0, 0)
			h.publish(0)
		}},
		{"no status byte", func(h *virtioHarness) {
			h.writeDesc(0, vqHeader, 16, 0, 0)
			h.publish(0)
		}},
		{"head out of range", func(h *virtioHarness) { h.publish(200) }},
		{"avail index jump", func(h *virtioHarness) {
			binary.LittleEndian.PutUint16(h.mem[vqAvail+2:], 100)
			write32(h.dev, vmmioQueueNotify, 0)
		}},
		{"ring outside memory", func(h *virtioHarness) {
			write32(h.dev, vmmioQueueReady, 0)
			write32(h.dev, vmmioQueueDeviceLow, 0xFFFFF000)
			write32(h.dev, vmmioQueueDeviceHigh, 0xFFFFFFFF)
			write32(h.dev, vmmioQueueReady, 1)
		}},
		{"queue size not a power of two", func(h *virtioHarness) {
			write32(h.dev, vmmioQueueReady, 0)
			write32(h.dev, vmmioQueueNum, 6)
			write32(h.dev, vmmioQueueReady, 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newVirtioHarness(t)
			h.header(virtioBlkTIn, 0)
			tc.setup(h)
			if read32(h.dev, vmmioStatus)&virtioStatusNeedsReset == 0 {
				t.Fatal("DEVICE_NEEDS_RESET not set")
			}
			if read32(h.dev, vmmioInterruptStatus)&virtioIntConfigChange == 0 || h.irq.rises[5] == 0 {
				t.Error("no configuration-change interrupt")
			}
			before := h.usedIdx()
			write32(h.dev, vmmioQueueNotify, 0)
			if h.usedIdx() != before {
				t.Error("a broken device processed requests")
			}
			// A reset recovers it.
			h.setUp()
			h.submit([]vdesc{{vqHeader, 16, false}, {vqData, 512, true}, {vqStatus, 1, true}})
			if h.usedIdx() != 1 || h.mem[vqStatus] != virtioBlkSOK {
				t.Error("device does not work after reset")
			}
		})
	}
}

func TestVirtioBlockTransport(t *testing.T) {
	h := newVirtioHarness(t)
	d := h.dev
	var cfg [8]byte
	d.Read(vmmioConfig, cfg[:])
	if got := binary.LittleEndian.Uint64(cfg[:]); got != 128 {
		t.Errorf("capacity %d sectors, want 128", got)
	}
	var b [1]byte
	d.Read(vmmioConfig+1, b[:])
	if b[0] != 0 {
		t.Errorf("capacity byte 1 = %d", b[0])
	}
	if read32(d, vmmioSHMLenLow) != 0xFFFFFFFF {
		t.Error("shared memory length must read -1")
	}
	// NO_INTERRUPT in the avail flags suppresses the notification.
	binary.LittleEndian.PutUint16(h.mem[vqAvail:], vringAvailFNoInterrupt)
	h.header(virtioBlkTFlush, 0)
	h.submit([]vdesc{{vqHeader, 16, false}, {vqStatus, 1, true}})
	if h.usedIdx() != 1 || h.irq.rises[5] != 0 {
		t.Errorf("used %d, %d interrupts; want 1 and none", h.usedIdx(), h.irq.rises[5])
	}
	// Queue registers are frozen while the queue is ready.
	write32(d, vmmioQueueDescLow, 0x5000)
	if d.Snapshot().Queues[0].Desc != vqDesc {
		t.Error("descriptor address changed on a ready queue")
	}
	snap := d.Snapshot()
	other := NewVirtioBlock(h.mem, h.disk, h.irq, 5)
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	h.dev = other
	h.submit([]vdesc{{vqHeader, 16, false}, {vqStatus, 1, true}})
	if h.usedIdx() != 2 {
		t.Errorf("restored device: used idx %d, want 2", h.usedIdx())
	}
	bad := snap
	bad.Queues = []VirtioQueueState{{Ready: true, Num: 8, Desc: 1 << 40}}
	if err := other.Restore(bad); err == nil {
		t.Error("restore accepted a ring outside guest memory")
	}

	// A driver without VERSION_1 is refused.
	write32(d, vmmioStatus, 0)
	write32(d, vmmioStatus, virtioStatusAcknowledge|virtioStatusDriver)
	write32(d, vmmioDriverFeaturesSel, 0)
	write32(d, vmmioDriverFeatures, 1<<9)
	write32(d, vmmioStatus, virtioStatusAcknowledge|virtioStatusDriver|virtioStatusFeaturesOK)
	if read32(d, vmmioStatus)&virtioStatusFeaturesOK != 0 {
		t.Error("FEATURES_OK accepted without VIRTIO_F_VERSION_1")
	}
}

// TestVirtioBlockDMAObserver: the observer is told of every byte a read
// request writes into guest memory (both data segments and the status),
// then of the used element and index, each with the bytes written.
func TestVirtioBlockDMAObserver(t *testing.T) {
	h := newVirtioHarness(t)
	type write struct {
		pa   uint64
		data []byte
	}
	var got []write
	h.dev.ObserveDMA(func(pa uint64, data []byte) { got = append(got, write{pa, append([]byte(nil), data...)}) })
	h.header(virtioBlkTIn, 2)
	h.submit([]vdesc{{vqHeader, 16, false}, {vqData, 512, true}, {vqData + 0x1000, 512, true}, {vqStatus, 1, true}})
	want := []write{
		{vqData, h.disk.data[1024:1536]}, {vqData + 0x1000, h.disk.data[1536:2048]}, {vqStatus, []byte{virtioBlkSOK}},
		{vqUsed + 4, h.mem[vqUsed+4 : vqUsed+12]}, {vqUsed + 2, []byte{1, 0}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d DMA writes reported, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].pa != want[i].pa || !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("DMA write %d: %d bytes at %#x, want %d bytes at %#x", i, len(got[i].data), got[i].pa, len(want[i].data), want[i].pa)
		}
	}
	h.dev.ObserveDMA(nil)
	h.header(virtioBlkTIn, 0)
	h.submit([]vdesc{{vqHeader, 16, false}, {vqData, 512, true}, {vqStatus, 1, true}})
	if len(got) != len(want) {
		t.Errorf("%d DMA writes reported after the observer was removed", len(got)-len(want))
	}
}
