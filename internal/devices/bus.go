package devices

import "fmt"

// Bus maps guest I/O ports and guest-physical MMIO ranges to the devices
// behind them: the one table the machine's exit dispatch looks every
// port and MMIO access up in. A machine has about ten ranges, so a lookup
// is a linear scan in the order the ranges were added (add the busiest
// first). Ranges must not overlap: adding one that does panics, since the
// table is the VMM's configuration, not guest input.
//
// The zero Bus is empty and ready to use. Like the devices, a Bus is not
// safe for concurrent use; the machine adds every range before the vCPUs
// run and only looks up afterwards.
type Bus struct {
	// ports are the port ranges, in the order added.
	ports []portRange
	// mmio are the MMIO ranges, in the order added.
	mmio []mmioRange
}

// portRange is ports first..last (inclusive) of one device.
type portRange struct {
	first, last uint16    // the range, inclusive
	dev         PIODevice // receives the absolute port number
}

// mmioRange is guest-physical [base, base+size) of one device, or of one
// device per vCPU.
type mmioRange struct {
	base, size uint64                   // the range
	dev        MMIODevice               // the device, or nil if perCPU is set
	perCPU     func(cpu int) MMIODevice // the accessing vCPU's device (the LAPIC)
}

// AddPorts routes ports base..base+n-1 to dev.
func (b *Bus) AddPorts(base uint16, n int, dev PIODevice) {
	if n < 1 || int(base)+n-1 > 0xFFFF {
		panic(fmt.Sprintf("Bus.AddPorts: %d ports at %#x", n, base))
	}
	r := portRange{first: base, last: base + uint16(n-1), dev: dev}
	for _, o := range b.ports {
		if r.first <= o.last && o.first <= r.last {
			panic(fmt.Sprintf("Bus.AddPorts: ports %#x-%#x overlap %#x-%#x", r.first, r.last, o.first, o.last))
		}
	}
	b.ports = append(b.ports, r)
}

// AddMMIO routes guest-physical [base, base+size) to dev, which sees
// offsets from base.
func (b *Bus) AddMMIO(base, size uint64, dev MMIODevice) {
	b.addMMIO(mmioRange{base: base, size: size, dev: dev})
}

// AddMMIOPerCPU routes guest-physical [base, base+size) to the device
// that dev returns for the accessing vCPU: the local APIC page is at the
// same address on every CPU, and each CPU sees its own.
func (b *Bus) AddMMIOPerCPU(base, size uint64, dev func(cpu int) MMIODevice) {
	b.addMMIO(mmioRange{base: base, size: size, perCPU: dev})
}

func (b *Bus) addMMIO(r mmioRange) {
	if r.size == 0 || r.base+r.size < r.base {
		panic(fmt.Sprintf("Bus.AddMMIO: %#x bytes at %#x", r.size, r.base))
	}
	for _, o := range b.mmio {
		if r.base < o.base+o.size && o.base < r.base+r.size {
			panic(fmt.Sprintf("Bus.AddMMIO: [%#x, %#x) overlaps [%#x, %#x)", r.base, r.base+r.size, o.base, o.base+o.size))
		}
	}
	b.mmio = append(b.mmio, r)
}

// Port returns the device at port, or nil if there is none.
func (b *Bus) Port(port uint16) PIODevice {
	for i := range b.ports {
		if r := &b.ports[i]; port >= r.first && port <= r.last {
			return r.dev
		}
	}
	return nil
}

// MMIO returns the device at guest-physical addr as vCPU cpu sees it, and
// addr's offset from the device's base; nil if there is none.
func (b *Bus) MMIO(cpu int, addr uint64) (MMIODevice, uint64) {
	for i := range b.mmio {
		r := &b.mmio[i]
		if addr < r.base || addr-r.base >= r.size {
			continue
		}
		if r.perCPU != nil {
			return r.perCPU(cpu), addr - r.base
		}
		return r.dev, addr - r.base
	}
	return nil, 0
}
