package devices

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Local APIC (xAPIC mode) emulated in userspace.
//
// The guest sees the 4 KiB register page at 0xFEE00000 (Intel SDM Vol. 3A,
// §10.4.1, Table 10-1). Every vCPU has its own LAPIC at the same address; the
// machine routes an access to the LAPIC of the vCPU that made it. Interrupts
// reach the vCPU through the machine: at an interrupt window it calls
// PendingVector, injects with KVM_INTERRUPT, and then calls Acknowledge,
// which is the INTA cycle of SDM §10.8.4 (IRR bit → ISR bit).
//
// x2APIC and the TSC-deadline timer mode are not offered: the guest's CPUID
// bits for both are cleared, so Linux uses the MMIO page and the one-shot or
// periodic timer modes.

// LAPICBase is the default guest-physical address of the xAPIC page.
const LAPICBase = 0xFEE00000

// lapicNsPerBusCycle is the period of the APIC bus clock that drives the
// timer before the divider. A 1 GHz bus (1 ns per cycle) is what KVM's
// in-kernel LAPIC uses (APIC_BUS_CYCLE_NS = 1), so a guest calibrates the
// same lapic_timer_period under this model as under KVM's, and count ↔ ns
// conversion is an exact integer multiplication.
const lapicNsPerBusCycle = 1

// lapicMinPeriodNs is the shortest periodic-timer period honoured. A guest
// that programs a tiny periodic count would otherwise make the machine poll
// continuously; KVM clamps the same way (its min_timer_period_us = 200).
const lapicMinPeriodNs = 200_000

// LAPICVersion is the value of the version register: version 0x14 (an
// integrated APIC), Max LVT Entry 5 (six LVTs: timer, thermal, performance,
// LINT0, LINT1, error), bit 24 clear (no EOI-broadcast suppression).
const LAPICVersion = 0x00050014

// Register offsets in the xAPIC page (SDM Table 10-1).
const (
	lapicRegID           = 0x020
	lapicRegVersion      = 0x030
	lapicRegTPR          = 0x080
	lapicRegAPR          = 0x090
	lapicRegPPR          = 0x0A0
	lapicRegEOI          = 0x0B0
	lapicRegLDR          = 0x0D0
	lapicRegDFR          = 0x0E0
	lapicRegSVR          = 0x0F0
	lapicRegISR          = 0x100
	lapicRegTMR          = 0x180
	lapicRegIRR          = 0x200
	lapicRegESR          = 0x280
	lapicRegICRLow       = 0x300
	lapicRegICRHigh      = 0x310
	lapicRegLVTTimer     = 0x320
	lapicRegLVTError     = 0x370
	lapicRegTimerInitial = 0x380
	lapicRegTimerCurrent = 0x390
	lapicRegTimerDivide  = 0x3E0
)

// Indices into LAPICState.LVT, in register order from 0x320.
const (
	lvtTimer = iota
	lvtThermal
	lvtPerf
	lvtLINT0
	lvtLINT1
	lvtError
	lvtCount
)

const (
	lvtMasked        = 1 << 16 // LVT mask bit (all LVTs)
	lvtTimerPeriodic = 1 << 17 // timer mode bit 17: 0 one-shot, 1 periodic
	svrEnabled       = 1 << 8  // SVR bit 8: APIC software enable
	esrSendIllegal   = 1 << 5  // ESR: send illegal vector
	esrRecvIllegal   = 1 << 6  // ESR: receive illegal vector
)

// lvtWritable is the writable-bit mask of each LVT (SDM Figure 10-8):
// delivery status (bit 12) and remote IRR (bit 14) are read-only, and the
// timer has no delivery mode and no TSC-deadline bit (18) here.
var lvtWritable = [lvtCount]uint32{
	lvtTimer:   0x000300FF, // vector, mask, one-shot/periodic
	lvtThermal: 0x000107FF, // vector, delivery mode, mask
	lvtPerf:    0x000107FF,
	lvtLINT0:   0x0001A7FF, // plus polarity (13) and trigger mode (15)
	lvtLINT1:   0x0001A7FF,
	lvtError:   0x000100FF, // vector, mask
}

// LAPICState is the complete register state of one LAPIC. It is a plain
// struct so that it can be gob-encoded into a checkpoint; the LAPIC keeps
// its live state in one, so a snapshot cannot miss a field.
type LAPICState struct {
	TPR           uint32           // task priority register (bits 0-7)
	LDR           uint32           // logical destination register (bits 24-31)
	DFR           uint32           // destination format: 0xFFFFFFFF flat, 0x0FFFFFFF cluster
	SVR           uint32           // spurious vector register (vector, enable, focus)
	ESR           uint32           // error status visible to reads (latched by an ESR write)
	ESRNext       uint32           // errors accumulated since the last ESR write (SDM §10.5.3)
	ICRLow        uint32           // interrupt command register, low half (writing it sends)
	ICRHigh       uint32           // interrupt command register, high half (destination)
	LVT           [lvtCount]uint32 // local vector table: timer, thermal, perf, LINT0, LINT1, error
	IRR           [8]uint32        // interrupt request register: accepted, not yet injected
	ISR           [8]uint32        // in-service register: injected, not yet EOIed
	TMR           [8]uint32        // trigger mode register: 1 = level (EOI goes to the IOAPIC)
	TimerInitial  uint32           // timer initial count; 0 stops the timer
	TimerDivide   uint32           // divide configuration register (bits 0, 1, 3)
	TimerArmed    bool             // the timer is counting towards TimerDeadline
	TimerDeadline int64            // guest ns at which the current count reaches 0
	WaitSIPI      bool             // in wait-for-SIPI state: a SIPI starts this CPU
}

// LAPIC is one vCPU's local APIC.
type LAPIC struct {
	bus *APICBus   // carries IPIs to other LAPICs and EOIs to the IOAPIC
	cpu int        // vCPU index; also the APIC ID, which is read-only here
	s   LAPICState // all guest-visible state
}

// lapicPowerOnState is the register state after power-up or INIT (SDM
// §10.4.7.1): all LVTs masked, DFR all ones, SVR 0xFF (software-disabled).
func lapicPowerOnState() LAPICState {
	s := LAPICState{DFR: 0xFFFFFFFF, SVR: 0xFF}
	for i := range s.LVT {
		s.LVT[i] = lvtMasked
	}
	return s
}

// ID returns the APIC ID (the vCPU index).
func (a *LAPIC) ID() int { return a.cpu }

// Read implements MMIODevice. Registers are 32 bits at 16-byte-aligned
// offsets; a narrower or unaligned read returns the bytes of the register at
// that offset (as KVM does), and bytes beyond the 32-bit register read 0.
func (a *LAPIC) Read(off uint64, data []byte) {
	var buf [8]byte
	if sub := off & 0xF; sub < 4 {
		binary.LittleEndian.PutUint32(buf[:4], a.readReg(off&^0xF)>>(8*sub))
	}
	copy(data, buf[:])
}

// Write implements MMIODevice. Only aligned 32-bit writes reach a register;
// others are dropped, as KVM drops them, since the SDM makes them undefined.
func (a *LAPIC) Write(off uint64, data []byte) {
	if len(data) != 4 || off&0xF != 0 {
		return
	}
	a.writeReg(off, binary.LittleEndian.Uint32(data))
}

func (a *LAPIC) readReg(reg uint64) uint32 {
	switch {
	case reg == lapicRegID:
		return uint32(a.cpu) << 24
	case reg == lapicRegVersion:
		return LAPICVersion
	case reg == lapicRegTPR:
		return a.s.TPR
	case reg == lapicRegAPR:
		return a.apr()
	case reg == lapicRegPPR:
		return a.ppr()
	case reg == lapicRegLDR:
		return a.s.LDR
	case reg == lapicRegDFR:
		return a.s.DFR
	case reg == lapicRegSVR:
		return a.s.SVR
	case reg >= lapicRegISR && reg < lapicRegISR+0x80:
		return a.s.ISR[(reg-lapicRegISR)>>4]
	case reg >= lapicRegTMR && reg < lapicRegTMR+0x80:
		return a.s.TMR[(reg-lapicRegTMR)>>4]
	case reg >= lapicRegIRR && reg < lapicRegIRR+0x80:
		return a.s.IRR[(reg-lapicRegIRR)>>4]
	case reg == lapicRegESR:
		return a.s.ESR
	case reg == lapicRegICRLow:
		return a.s.ICRLow // delivery status (bit 12) is always idle: sends are instant
	case reg == lapicRegICRHigh:
		return a.s.ICRHigh
	case reg >= lapicRegLVTTimer && reg <= lapicRegLVTError:
		return a.s.LVT[(reg-lapicRegLVTTimer)>>4]
	case reg == lapicRegTimerInitial:
		return a.s.TimerInitial
	case reg == lapicRegTimerCurrent:
		return a.timerCurrent(a.bus.clock.Now())
	case reg == lapicRegTimerDivide:
		return a.s.TimerDivide
	}
	return 0 // EOI is write-only; reserved registers read 0
}

func (a *LAPIC) writeReg(reg uint64, v uint32) {
	switch {
	case reg == lapicRegTPR:
		a.s.TPR = v & 0xFF
		a.kickIfPending() // lowering TPR can unblock a pending vector
	case reg == lapicRegEOI:
		a.eoi()
	case reg == lapicRegLDR:
		a.s.LDR = v & 0xFF000000
	case reg == lapicRegDFR:
		a.s.DFR = v | 0x0FFFFFFF // bits 0-27 are reserved and read as 1
	case reg == lapicRegSVR:
		a.s.SVR = v & 0x3FF
		if a.s.SVR&svrEnabled == 0 {
			// SDM §10.4.7.2: software-disabling masks every LVT.
			for i := range a.s.LVT {
				a.s.LVT[i] |= lvtMasked
			}
		}
	case reg == lapicRegESR:
		// SDM §10.5.3: a write latches the errors seen since the last write.
		a.s.ESR, a.s.ESRNext = a.s.ESRNext, 0
	case reg == lapicRegICRLow:
		a.s.ICRLow = v & 0x000CCFFF // bit 12 (delivery status) stays 0
		a.sendIPI()
	case reg == lapicRegICRHigh:
		a.s.ICRHigh = v & 0xFF000000
	case reg >= lapicRegLVTTimer && reg <= lapicRegLVTError:
		i := (reg - lapicRegLVTTimer) >> 4
		v &= lvtWritable[i]
		if a.s.SVR&svrEnabled == 0 {
			v |= lvtMasked // SDM §10.4.7.2: cannot unmask while disabled
		}
		a.s.LVT[i] = v
	case reg == lapicRegTimerInitial:
		a.s.TimerInitial = v
		if v == 0 {
			a.s.TimerArmed = false
			return
		}
		a.s.TimerArmed = true
		a.s.TimerDeadline = a.bus.clock.Now() + int64(v)*a.nsPerCount()
	case reg == lapicRegTimerDivide:
		now := a.bus.clock.Now()
		cur := a.timerCurrent(now)
		a.s.TimerDivide = v & 0xB
		if a.s.TimerArmed {
			// Keep the current count and continue at the new rate.
			a.s.TimerDeadline = now + int64(cur)*a.nsPerCount()
		}
	}
	// ID, version, APR, PPR, ISR, TMR, IRR and current count are read-only.
}

// nsPerCount is the guest time one timer count takes: the bus period times
// the divider selected by DCR bits 0, 1 and 3 (SDM Figure 10-10).
func (a *LAPIC) nsPerCount() int64 {
	d := a.s.TimerDivide&3 | (a.s.TimerDivide&8)>>1
	if d == 7 {
		return lapicNsPerBusCycle
	}
	return lapicNsPerBusCycle << (d + 1)
}

func (a *LAPIC) periodic() bool { return a.s.LVT[lvtTimer]&lvtTimerPeriodic != 0 }

// periodNs is the time between periodic timer interrupts.
func (a *LAPIC) periodNs() int64 {
	return max(int64(a.s.TimerInitial)*a.nsPerCount(), lapicMinPeriodNs)
}

// timerCurrent computes the current-count register at guest time now. A
// periodic deadline that has passed but not been polled yet is advanced
// virtually, so reads are right regardless of when the machine polls.
func (a *LAPIC) timerCurrent(now int64) uint32 {
	if !a.s.TimerArmed {
		return 0
	}
	dl := a.s.TimerDeadline
	if now >= dl {
		if !a.periodic() {
			return 0
		}
		p := a.periodNs()
		dl += ((now-dl)/p + 1) * p
	}
	per := a.nsPerCount()
	c := (dl - now + per - 1) / per
	return uint32(min(c, int64(a.s.TimerInitial)))
}

// NextDeadline implements Timed.
func (a *LAPIC) NextDeadline() (int64, bool) {
	return a.s.TimerDeadline, a.s.TimerArmed
}

// Poll implements Timed: at the deadline a one-shot timer stops and a
// periodic one reloads (SDM §10.5.4); either raises the timer LVT's vector
// unless masked. Periods missed while the machine was not polling coalesce
// into one interrupt, as a real IRR bit would.
func (a *LAPIC) Poll(now int64) {
	if !a.s.TimerArmed || now < a.s.TimerDeadline {
		return
	}
	if a.periodic() {
		p := a.periodNs()
		a.s.TimerDeadline += ((now-a.s.TimerDeadline)/p + 1) * p
	} else {
		a.s.TimerArmed = false
	}
	a.fireLVT(lvtTimer)
}

// fireLVT raises a local interrupt source as a fixed, edge interrupt.
func (a *LAPIC) fireLVT(i int) {
	lvt := a.s.LVT[i]
	if lvt&lvtMasked != 0 || a.s.SVR&svrEnabled == 0 {
		return
	}
	a.accept(uint8(lvt), false)
}

// accept is the LAPIC receiving a fixed or lowest-priority interrupt
// message: it sets the IRR bit (and TMR for level-triggered ones) and wakes
// the vCPU. It reports whether the interrupt was accepted.
func (a *LAPIC) accept(vector uint8, level bool) bool {
	if vector < 16 {
		// SDM §10.5.3: vectors 0-15 are illegal; the error LVT reports it.
		a.s.ESRNext |= esrRecvIllegal
		if e := a.s.LVT[lvtError]; e&lvtMasked == 0 && uint8(e) >= 16 {
			a.fireLVT(lvtError)
		}
		return false
	}
	if a.s.SVR&svrEnabled == 0 {
		// A software-disabled APIC drops fixed interrupts (KVM does too);
		// a level-triggered source then keeps its remote IRR clear.
		return false
	}
	setBit(&a.s.IRR, vector)
	if level {
		setBit(&a.s.TMR, vector)
	} else {
		clearBit(&a.s.TMR, vector)
	}
	a.bus.hooks.Kick(a.cpu)
	return true
}

// PendingVector returns the highest-priority requested vector that may be
// delivered now: its priority class (vector bits 7-4) must be above the
// processor priority class (SDM §10.8.3.1).
func (a *LAPIC) PendingVector() (vector uint8, ok bool) {
	v := highestBit(&a.s.IRR)
	if v < 0 || uint32(v)&0xF0 <= a.ppr()&0xF0 {
		return 0, false
	}
	return uint8(v), true
}

// Acknowledge records that vector was injected into the vCPU: it moves from
// IRR to ISR. The machine calls it right after KVM_INTERRUPT succeeds.
func (a *LAPIC) Acknowledge(vector uint8) {
	if !testBit(&a.s.IRR, vector) {
		return // nothing requested: the machine injected a stale vector
	}
	clearBit(&a.s.IRR, vector)
	setBit(&a.s.ISR, vector)
}

// Unacknowledge undoes Acknowledge(vector) for a squashed chunk: the
// vector is requested again and no longer in service. Requests other
// vCPUs made meanwhile stay (IRR bits only accumulate).
func (a *LAPIC) Unacknowledge(vector uint8) {
	clearBit(&a.s.ISR, vector)
	setBit(&a.s.IRR, vector)
}

// RequestedVectors returns the IRR, so the parallel recorder can see which
// local APICs an exit raised interrupts in.
func (a *LAPIC) RequestedVectors() [8]uint32 { return a.s.IRR }

// eoi retires the highest in-service vector (SDM §10.8.5). For a
// level-triggered vector the EOI is broadcast to the IOAPIC, which clears
// the remote IRR of the pin and redelivers if the line is still asserted.
func (a *LAPIC) eoi() {
	v := highestBit(&a.s.ISR)
	if v < 0 {
		return
	}
	clearBit(&a.s.ISR, uint8(v))
	if testBit(&a.s.TMR, uint8(v)) {
		clearBit(&a.s.TMR, uint8(v))
		a.bus.ioapicEOI(uint8(v))
	}
	a.kickIfPending() // a lower-priority vector may now be deliverable
}

// kickIfPending asks the machine to look for an interrupt window when a
// register write made a requested vector deliverable. The machine may get
// this for the vCPU whose exit it is handling.
func (a *LAPIC) kickIfPending() {
	if _, ok := a.PendingVector(); ok {
		a.bus.hooks.Kick(a.cpu)
	}
}

// ppr is the processor priority (SDM §10.8.3.1): the TPR if its class is at
// least that of the highest in-service vector, else that vector's class.
func (a *LAPIC) ppr() uint32 {
	isrv := uint32(max(highestBit(&a.s.ISR), 0))
	if a.s.TPR&0xF0 >= isrv&0xF0 {
		return a.s.TPR & 0xFF
	}
	return isrv & 0xF0
}

// apr is the arbitration priority (SDM §10.8.3.2 / Figure 10-15).
func (a *LAPIC) apr() uint32 {
	isrv := uint32(max(highestBit(&a.s.ISR), 0))
	irrv := uint32(max(highestBit(&a.s.IRR), 0))
	top := max(isrv, irrv) & 0xF0
	if a.s.TPR&0xF0 >= top {
		return a.s.TPR & 0xFF
	}
	return top
}

// CR8 returns the task priority as the vCPU's CR8 register shows it
// (TPR bits 7-4, SDM §10.8.6.1), for syncing with kvm_run.cr8.
func (a *LAPIC) CR8() uint64 { return uint64(a.s.TPR >> 4) }

// SetCR8 updates the TPR after the guest wrote CR8 (kvm_run.cr8 on exit).
func (a *LAPIC) SetCR8(cr8 uint64) { a.writeReg(lapicRegTPR, uint32(cr8&0xF)<<4) }

// initReset is the effect of an INIT message (SDM §10.4.7.3): the LAPIC
// returns to its power-up state except for its ID, and waits for a SIPI.
func (a *LAPIC) initReset() {
	a.s = lapicPowerOnState()
	a.s.WaitSIPI = true
}

// Snapshot returns the LAPIC's state.
func (a *LAPIC) Snapshot() LAPICState { return a.s }

// Restore replaces the LAPIC's state (deadlines are guest ns, the same time
// base as the Clock, so they need no conversion).
func (a *LAPIC) Restore(s LAPICState) error {
	if s.TimerArmed && s.TimerInitial == 0 {
		return fmt.Errorf("lapic %d: armed timer with initial count 0", a.cpu)
	}
	a.s = s
	return nil
}

// setBit, clearBit, testBit and highestBit operate on a 256-bit vector laid
// out as the IRR/ISR/TMR registers are: bit v of register v/32.
func setBit(r *[8]uint32, v uint8)   { r[v>>5] |= 1 << (v & 31) }
func clearBit(r *[8]uint32, v uint8) { r[v>>5] &^= 1 << (v & 31) }
func testBit(r *[8]uint32, v uint8) bool {
	return r[v>>5]&(1<<(v&31)) != 0
}

// highestBit returns the highest set bit, or -1 if none is set.
func highestBit(r *[8]uint32) int {
	for i := 7; i >= 0; i-- {
		if r[i] != 0 {
			return i*32 + 31 - bits.LeadingZeros32(r[i])
		}
	}
	return -1
}
