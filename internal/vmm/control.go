package vmm

// The control page: samsara's guest-to-VMM channel, at guest-physical
// address controlPageAddr inside the legacy 640K-1M hole (not RAM, so every
// access exits to the VMM). The reference init (guest-images/init/init.c)
// reaches it with pread/pwrite on /dev/mem, which STRICT_DEVMEM allows for
// the first MiB. Layout:
//
//	0x000 write  power off; the byte written is the guest's exit status
//	0x004 write  checkpoint request: "the machine may be saved here"
//	0x008 read   4 bytes, little-endian: the length of the command at
//	             0x100 in bytes, so that init reads only that much: every
//	             8 bytes /dev/mem reads is one exit, and in the parallel
//	             recorder one chunk and commit (measured on PVM: reading
//	             the whole 3840 bytes took 480 chunks, 0.43 s of a 2.6 s
//	             recording of blackscholes 2 tiny)
//	0x100 read   the program to run: NUL-terminated argv strings, the
//	             list ended by an empty string; an empty list means the
//	             reference workload
//
// Reads of any other offset return 0 (Linux's ROM scan reads 0xC0000-
// 0xFFFFF looking for 0xAA55 signatures and must find none).
import "encoding/binary"

const (
	controlPageAddr   = 0xD0000
	controlPowerOff   = 0x000
	controlCheckpoint = 0x004
	controlCommandLen = 0x008
	controlCommand    = 0x100
	controlPageSize   = 0x1000
)

// controlHooks is what the control page asks of the machine.
type controlHooks interface {
	powerOff(status int)
	checkpointRequested(cpu int)
}

// controlPage is the device model of the control page.
type controlPage struct {
	// command is the encoded argv served at controlCommand.
	command []byte
	// hooks receives power-off and checkpoint requests.
	hooks controlHooks
}

// encodeCommand encodes argv as the control page serves it.
func encodeCommand(argv []string) []byte {
	var b []byte
	for _, a := range argv {
		b = append(b, a...)
		b = append(b, 0)
	}
	return append(b, 0)
}

// maxCommandBytes is what fits in the page after controlCommand.
const maxCommandBytes = controlPageSize - controlCommand

func (c *controlPage) read(off uint64, data []byte) {
	clear(data)
	if off < controlCommand {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(c.command)))
		if off >= controlCommandLen && off < controlCommandLen+4 {
			copy(data, n[off-controlCommandLen:])
		}
		return
	}
	i := off - controlCommand
	if i < uint64(len(c.command)) {
		copy(data, c.command[i:])
	}
}

func (c *controlPage) write(cpu int, off uint64, data []byte) {
	switch off {
	case controlPowerOff:
		c.hooks.powerOff(int(data[0]))
	case controlCheckpoint:
		c.hooks.checkpointRequested(cpu)
	}
}
