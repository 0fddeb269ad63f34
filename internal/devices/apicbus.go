package devices

import "fmt"

// The APIC bus carries interrupt messages between the local APICs, from the
// IOAPIC to the local APICs, and EOIs from the local APICs back to the
// IOAPIC. On real hardware it is a serial bus (P6) or system-bus messages;
// here a message is a method call, delivered instantly, so every ICR send
// completes before the write returns.

// Delivery modes of an interrupt message (ICR bits 8-10, IOAPIC
// redirection entry bits 8-10; SDM §10.6.1).
const (
	APICModeFixed          = 0 // the vector, to every destination
	APICModeLowestPriority = 1 // the vector, to one destination
	APICModeSMI            = 2 // system management interrupt: not emulated
	APICModeNMI            = 4 // NMI: not emulated (see deliverTo)
	APICModeINIT           = 5 // INIT: reset the destination, wait for SIPI
	APICModeStartup        = 6 // SIPI: start at vector<<12 in real mode
	APICModeExtINT         = 7 // external (8259) interrupt: there is no 8259
)

// APICBroadcast is the 8-bit xAPIC destination that addresses every LAPIC,
// in physical and in logical mode.
const APICBroadcast = 0xFF

// APICHooks is what the APIC bus needs from the machine.
type APICHooks interface {
	// Kick: an interrupt became pending for cpu; wake it (out of HLT or
	// KVM_RUN) so the machine looks for an interrupt window.
	Kick(cpu int)
	// InitCPU: cpu received INIT and now waits for a SIPI.
	InitCPU(cpu int)
	// StartCPU: cpu received a SIPI while waiting for one; it starts in
	// real mode at CS:IP = (vector<<8):0, i.e. physical vector<<12.
	StartCPU(cpu int, vector uint8)
}

// APICBus connects the machine's LAPICs and its IOAPIC.
type APICBus struct {
	clock  Clock     // guest time, for the LAPIC timers
	hooks  APICHooks // the machine's vCPU controls
	lapics []*LAPIC  // indexed by vCPU number = APIC ID
	ioapic *IOAPIC   // receives EOIs of level-triggered vectors; may be nil
	dests  []int     // scratch list of destinations, reused to avoid allocation
}

// APICBusState is the state of every LAPIC on the bus, by vCPU index.
type APICBusState struct {
	LAPICs []LAPICState // one per vCPU
}

// NewAPICBus creates ncpus LAPICs with APIC IDs 0..ncpus-1. CPU 0 is the
// bootstrap processor; the others start in wait-for-SIPI state, as
// application processors are after the BIOS has parked them.
//
// Preconditions: 1 <= ncpus <= 254 (xAPIC IDs are 8 bits and 0xFF is the
// broadcast address); the caller validates the configuration.
func NewAPICBus(ncpus int, clock Clock, hooks APICHooks) *APICBus {
	if ncpus < 1 || ncpus >= APICBroadcast {
		panic(fmt.Sprintf("NewAPICBus: %d CPUs, want 1..254", ncpus))
	}
	b := &APICBus{clock: clock, hooks: hooks, dests: make([]int, 0, ncpus)}
	for i := range ncpus {
		l := &LAPIC{bus: b, cpu: i, s: lapicPowerOnState()}
		l.s.WaitSIPI = i != 0
		b.lapics = append(b.lapics, l)
	}
	return b
}

// LAPIC returns the local APIC of vCPU cpu.
func (b *APICBus) LAPIC(cpu int) *LAPIC { return b.lapics[cpu] }

// NumCPUs returns the number of LAPICs on the bus.
func (b *APICBus) NumCPUs() int { return len(b.lapics) }

// SetIOAPIC connects the IOAPIC that receives EOI broadcasts. NewIOAPIC
// calls it.
func (b *APICBus) SetIOAPIC(io *IOAPIC) { b.ioapic = io }

func (b *APICBus) ioapicEOI(vector uint8) {
	if b.ioapic != nil {
		b.ioapic.EOI(vector)
	}
}

// Deliver sends an interrupt message. dest is an 8-bit APIC ID (physical)
// or logical destination (logical); 0xFF addresses everyone. level says the
// interrupt is level-triggered (sets the TMR bit so the EOI reaches the
// IOAPIC).
func (b *APICBus) Deliver(dest uint32, logical bool, mode uint8, vector uint8, level bool) {
	b.deliver(dest, logical, mode, vector, level)
}

// deliver is Deliver returning how many LAPICs accepted the message, which
// the IOAPIC needs to decide whether to set remote IRR.
func (b *APICBus) deliver(dest uint32, logical bool, mode uint8, vector uint8, level bool) int {
	b.dests = b.dests[:0]
	for _, l := range b.lapics {
		if l.matches(dest&0xFF, logical) {
			b.dests = append(b.dests, l.cpu)
		}
	}
	return b.deliverTo(b.dests, mode, vector, level)
}

// matches reports whether this LAPIC is addressed by dest (SDM §10.6.2).
func (a *LAPIC) matches(dest uint32, logical bool) bool {
	if dest == APICBroadcast {
		return true
	}
	if !logical {
		return dest == uint32(a.cpu)
	}
	ldr := a.s.LDR >> 24
	if a.s.DFR>>28 == 0xF {
		// Flat model: the 8 LDR bits are a bit mask.
		return ldr&dest != 0
	}
	// Cluster model: bits 7-4 select the cluster, bits 3-0 the members.
	return ldr>>4 == dest>>4 && ldr&dest&0xF != 0
}

// deliverTo hands a message to the LAPICs of dests (ascending vCPU order)
// and returns how many accepted it.
func (b *APICBus) deliverTo(dests []int, mode uint8, vector uint8, level bool) int {
	n := 0
	switch mode {
	case APICModeFixed:
		for _, cpu := range dests {
			if b.lapics[cpu].accept(vector, level) {
				n++
			}
		}
	case APICModeLowestPriority:
		// Real hardware arbitrates on processor priority; the lowest
		// numbered destination is a legal choice (SDM §10.6.2.4 leaves it
		// model-specific) and keeps delivery deterministic.
		for _, cpu := range dests {
			if b.lapics[cpu].accept(vector, level) {
				return 1
			}
		}
	case APICModeINIT:
		for _, cpu := range dests {
			b.lapics[cpu].initReset()
			b.hooks.InitCPU(cpu)
			n++
		}
	case APICModeStartup:
		// SDM §8.4.4.1: a SIPI is honoured only in wait-for-SIPI state;
		// Linux sends two, and the second must not restart the CPU.
		for _, cpu := range dests {
			l := b.lapics[cpu]
			if l.s.WaitSIPI {
				l.s.WaitSIPI = false
				b.hooks.StartCPU(cpu, vector)
			}
			n++
		}
	default:
		// NMI, SMI and ExtINT are dropped: there is no 8259 for ExtINT, no
		// SMM, and Linux only sends NMI IPIs for backtraces and as a
		// last-resort shutdown path. Supporting NMI needs a KVM_NMI hook.
	}
	return n
}

// sendIPI sends the message just written to the ICR (SDM §10.6.1).
func (a *LAPIC) sendIPI() {
	low := a.s.ICRLow
	vector := uint8(low)
	mode := uint8(low>>8) & 7
	logical := low&(1<<11) != 0
	assert := low&(1<<14) != 0
	levelTrig := low&(1<<15) != 0
	if mode == APICModeINIT && levelTrig && !assert {
		// INIT level de-assert only synchronised arbitration IDs on old
		// parts; since the Pentium 4 it does nothing (SDM §10.6.1).
		return
	}
	if (mode == APICModeFixed || mode == APICModeLowestPriority) && vector < 16 {
		a.s.ESRNext |= esrSendIllegal
		return
	}
	// IPIs are edge-triggered: the trigger-mode bit only qualifies INIT.
	b := a.bus
	switch (low >> 18) & 3 {
	case 0: // no shorthand: the destination field
		b.deliver(a.s.ICRHigh>>24, logical, mode, vector, false)
	case 1: // self
		b.deliverTo([]int{a.cpu}, mode, vector, false)
	case 2, 3: // all including self, all excluding self
		b.dests = b.dests[:0]
		for _, l := range b.lapics {
			if l.cpu != a.cpu || (low>>18)&3 == 2 {
				b.dests = append(b.dests, l.cpu)
			}
		}
		b.deliverTo(b.dests, mode, vector, false)
	}
}

// NextDeadline implements Timed: the earliest LAPIC timer deadline.
func (b *APICBus) NextDeadline() (int64, bool) {
	var best int64
	found := false
	for _, l := range b.lapics {
		if d, ok := l.NextDeadline(); ok && (!found || d < best) {
			best, found = d, true
		}
	}
	return best, found
}

// Poll implements Timed: it polls every LAPIC timer in vCPU order.
func (b *APICBus) Poll(now int64) {
	for _, l := range b.lapics {
		l.Poll(now)
	}
}

// Snapshot returns the state of every LAPIC.
func (b *APICBus) Snapshot() APICBusState {
	s := APICBusState{LAPICs: make([]LAPICState, len(b.lapics))}
	for i, l := range b.lapics {
		s.LAPICs[i] = l.Snapshot()
	}
	return s
}

// Restore restores every LAPIC; the CPU count must match.
func (b *APICBus) Restore(s APICBusState) error {
	if len(s.LAPICs) != len(b.lapics) {
		return fmt.Errorf("apic bus: snapshot has %d LAPICs, machine has %d", len(s.LAPICs), len(b.lapics))
	}
	for i, l := range b.lapics {
		if err := l.Restore(s.LAPICs[i]); err != nil {
			return err
		}
	}
	return nil
}
