package devices

import (
	"encoding/binary"
	"math"
)

// virtio block device (VIRTIO 1.1 §5.2) behind the virtio-mmio transport.
//
// Requests are executed synchronously inside the QueueNotify write: the
// backend is an in-memory overlay over a read-only image, so a request
// costs a memory copy (or a page-cache read of the base image), and doing
// it inline keeps completion order deterministic for record/replay.

// virtioDeviceBlock is the virtio device type of a block device.
const virtioDeviceBlock = 2

// Block feature bits (§5.2.3).
const (
	virtioBlkFSegMax = uint64(1) << 2 // seg_max in config is valid
	virtioBlkFFlush  = uint64(1) << 9 // FLUSH requests are supported
)

// virtioBlkSegMax is the most data segments per request the driver may
// use: the ring's 256 descriptors less a header and a status descriptor,
// halved so that at least two requests can be in flight (indirect
// descriptors are not offered). Without it Linux sends one segment per
// request.
const virtioBlkSegMax = virtioQueueNumMax/2 - 2

// Request types (§5.2.6).
const (
	virtioBlkTIn    = 0
	virtioBlkTOut   = 1
	virtioBlkTFlush = 4
	virtioBlkTGetID = 8
)

// Request status values (§5.2.6).
const (
	virtioBlkSOK     = 0
	virtioBlkSIOErr  = 1
	virtioBlkSUnsupp = 2
)

// virtioBlkSectorSize is the unit of the request header's sector field,
// fixed by the spec regardless of the block size.
const virtioBlkSectorSize = 512

// virtioBlkIDBytes is the length of a GET_ID answer (§5.2.6: a 20-byte,
// NUL-padded serial number).
const virtioBlkIDBytes = 20

// virtioBlkID is the serial number the device reports (/sys/block/vda/serial).
const virtioBlkID = "samsara-disk"

// BlockBackend stores the disk's contents.
type BlockBackend interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
	Flush() error
}

// virtioBlock is the block device type.
type virtioBlock struct {
	disk BlockBackend // the disk contents
	cfg  [36]byte     // config space: capacity, size_max, seg_max, … num_queues
}

// VirtioBlock is a virtio-mmio block device: the transport (registers,
// rings, Snapshot/Restore of VirtioState) over the block device type.
type VirtioBlock struct {
	*VirtioMMIO              // transport; provides Read, Write, Snapshot, Restore
	blk         *virtioBlock // the device type, for Backend
}

// NewVirtioBlock creates a virtio-mmio block device with one request
// queue over disk. mem is guest memory indexed by guest-physical address;
// the device signals completions by pulsing irq's pin. The capacity is
// disk.Size() in whole 512-byte sectors.
func NewVirtioBlock(mem []byte, disk BlockBackend, irq IRQLine, pin int) *VirtioBlock {
	b := &virtioBlock{disk: disk}
	binary.LittleEndian.PutUint64(b.cfg[0:], uint64(disk.Size()/virtioBlkSectorSize))
	binary.LittleEndian.PutUint32(b.cfg[12:], virtioBlkSegMax)
	return &VirtioBlock{VirtioMMIO: newVirtioMMIO(mem, b, 1, irq, pin), blk: b}
}

// Backend returns the disk the device reads and writes.
func (v *VirtioBlock) Backend() BlockBackend { return v.blk.disk }

func (b *virtioBlock) deviceID() uint32 { return virtioDeviceBlock }

func (b *virtioBlock) features() uint64 {
	return virtioFVersion1 | virtioBlkFFlush | virtioBlkFSegMax
}

func (b *virtioBlock) config() []byte { return b.cfg[:] }

// handle executes one request: a 16-byte header {type le32, reserved le32,
// sector le64} in the readable buffers, then data (OUT: readable; IN,
// GET_ID: writable), then a one-byte status as the last writable byte. The
// buffers may be split anywhere (§2.6.4 "Message Framing").
func (b *virtioBlock) handle(readable, writable [][]byte) (uint32, error) {
	wlen := sgLen(writable)
	if wlen == 0 {
		return 0, errBadRing // no room for the status byte: cannot answer
	}
	data, status := sgSplit(writable, wlen-1)
	setStatus := func(s uint8) { status[0][0] = s }

	var hdr [16]byte
	if sgCopyFrom(hdr[:], readable) < len(hdr) {
		setStatus(virtioBlkSIOErr)
		return 1, nil
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])

	switch typ {
	case virtioBlkTIn:
		if !b.inRange(sector, sgLen(data)) {
			setStatus(virtioBlkSIOErr)
			return 1, nil
		}
		off := int64(sector) * virtioBlkSectorSize
		for _, p := range data {
			// io.ReaderAt may return io.EOF with a full buffer at the end.
			if n, _ := b.disk.ReadAt(p, off); n < len(p) {
				setStatus(virtioBlkSIOErr)
				return 1, nil
			}
			off += int64(len(p))
		}
		setStatus(virtioBlkSOK)
		return uint32(wlen), nil
	case virtioBlkTOut:
		_, payload := sgSplit(readable, len(hdr))
		if !b.inRange(sector, sgLen(payload)) {
			setStatus(virtioBlkSIOErr)
			return 1, nil
		}
		off := int64(sector) * virtioBlkSectorSize
		for _, p := range payload {
			if _, err := b.disk.WriteAt(p, off); err != nil {
				setStatus(virtioBlkSIOErr)
				return 1, nil
			}
			off += int64(len(p))
		}
		setStatus(virtioBlkSOK)
		return 1, nil
	case virtioBlkTFlush:
		if err := b.disk.Flush(); err != nil {
			setStatus(virtioBlkSIOErr)
		} else {
			setStatus(virtioBlkSOK)
		}
		return 1, nil
	case virtioBlkTGetID:
		var id [virtioBlkIDBytes]byte
		copy(id[:], virtioBlkID)
		n := sgCopyTo(data, id[:])
		setStatus(virtioBlkSOK)
		return uint32(n) + 1, nil
	default:
		setStatus(virtioBlkSUnsupp)
		return 1, nil
	}
}

// inRange reports whether n bytes from sector lie within the disk.
func (b *virtioBlock) inRange(sector uint64, n int) bool {
	if sector > math.MaxInt64/virtioBlkSectorSize {
		return false
	}
	off := int64(sector) * virtioBlkSectorSize
	return off <= b.disk.Size() && int64(n) <= b.disk.Size()-off
}

// sgLen is the total length of a scatter-gather list.
func sgLen(sg [][]byte) int {
	n := 0
	for _, p := range sg {
		n += len(p)
	}
	return n
}

// sgSplit splits sg at byte offset n (n ≤ sgLen(sg)) without copying data.
func sgSplit(sg [][]byte, n int) (head, tail [][]byte) {
	for i, p := range sg {
		if n < len(p) {
			head = append(head, p[:n])
			tail = append(append(tail, p[n:]), sg[i+1:]...)
			return head, tail
		}
		head = append(head, p)
		n -= len(p)
	}
	return head, nil
}

// sgCopyFrom gathers the start of sg into dst and returns the bytes copied.
func sgCopyFrom(dst []byte, sg [][]byte) int {
	n := 0
	for _, p := range sg {
		n += copy(dst[n:], p)
	}
	return n
}

// sgCopyTo scatters src into sg and returns the bytes copied.
func sgCopyTo(sg [][]byte, src []byte) int {
	n := 0
	for _, p := range sg {
		n += copy(p, src[n:])
	}
	return n
}
