package devices

// Interfaces between the machine (vCPU exit loop) and the device models.
//
// Locking: the machine serializes every device call under one platform
// mutex (internal/vmm's Machine.mu), so devices themselves are not safe
// for concurrent use and need no locks of their own. Device callbacks (IRQLine, APICBus) are
// invoked with that mutex held and must not block.

// MMIODevice handles guest accesses to a range of guest-physical addresses.
// off is the offset from the device's base address; len(data) is the access
// size (1, 2, 4 or 8 bytes). Read fills data (little-endian).
type MMIODevice interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

// PIODevice handles guest port I/O. port is the absolute port number.
type PIODevice interface {
	In(port uint16, data []byte)
	Out(port uint16, data []byte)
}

// IRQLine is an interrupt controller input (the IOAPIC's pins). A device
// asserts (level=true) and deasserts its line; an edge-triggered device
// pulses it (true then false).
type IRQLine interface {
	SetIRQ(pin int, level bool)
}

// Clock is the guest's notion of time in nanoseconds since the machine was
// created. In `run` mode it follows the host's monotonic clock (possibly
// scaled); in record/replay it is derived from guest progress, so devices
// must take all time from it and never from the host directly.
type Clock interface {
	Now() int64
}

// Timed is a device with a timer. The machine asks every Timed device for
// its next deadline, sleeps until the earliest one, and calls Poll with the
// current time; Poll raises whatever interrupts are due.
type Timed interface {
	// NextDeadline returns the guest time of the next event, ok=false if
	// the device has no armed timer.
	NextDeadline() (deadline int64, ok bool)
	// Poll fires every event due at or before now.
	Poll(now int64)
}

// putByteRead answers a port read of a byte-wide register: v in the first
// byte, zeros in any wider access's other bytes (UART, PIT and RTC).
func putByteRead(data []byte, v uint8) {
	clear(data)
	if len(data) > 0 {
		data[0] = v
	}
}
