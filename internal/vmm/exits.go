package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"

	"github.com/bobuhiro11/gokvm/kvm"
	"go.uber.org/zap"
)

// ErrGuestReset is the guest rebooting (keyboard-controller reset, triple
// fault, or a kernel panic with panic=-1).
var ErrGuestReset = errors.New("guest reset (reboot, triple fault or kernel panic)")

// ErrGuestDead is every vCPU halted with interrupts disabled.
var ErrGuestDead = errors.New("guest halted with interrupts disabled on every vCPU")

// EmulationError is an instruction KVM's emulator could not run and the
// VMM has no fallback for.
type EmulationError struct {
	VCPU  int
	RIP   uint64
	Bytes []byte
}

func (e *EmulationError) Error() string {
	return fmt.Sprintf("vcpu %d: KVM cannot emulate the instruction at RIP %#x (bytes % x); see shared/PLATFORM.md for the known ones", e.VCPU, e.RIP, e.Bytes)
}

// handleExit handles one KVM exit.
func (v *VCPU) handleExit() error {
	m := v.m
	switch r := v.run.ExitReason; r {
	case kvmsys.ExitIO:
		out, size, port, count, data := kvmsys.IOExit(v.run, v.page)
		m.mu.Lock()
		for i := 0; i < count; i++ {
			b := data[i*size : (i+1)*size]
			if out {
				m.portOut(port, b)
			} else {
				m.portIn(port, b)
			}
		}
		m.mu.Unlock()
	case kvmsys.ExitMMIO:
		addr, data, write := kvmsys.MMIOExit(v.run)
		m.mu.Lock()
		m.mmio(v.id, addr, data, write)
		m.mu.Unlock()
	case kvmsys.ExitHLT:
		m.mu.Lock()
		if v.run.IfFlag == 0 {
			v.state = stateDead
			if m.allDeadLocked() {
				m.stop(-1, ErrGuestDead)
			}
		} else if _, ok := m.bus.LAPIC(v.id).PendingVector(); !ok {
			v.state = stateHalted
		}
		m.mu.Unlock()
	case kvmsys.ExitIRQWindowOpen, kvmsys.ExitIntr:
		// Nothing to do: the loop injects at the top.
	case kvmsys.ExitShutdown:
		m.mu.Lock()
		m.stop(-1, ErrGuestReset)
		m.mu.Unlock()
	case kvmsys.ExitInternalError:
		return v.emulationFallback()
	case kvmsys.ExitFailEntry:
		return fmt.Errorf("KVM_EXIT_FAIL_ENTRY (hardware entry failure reason %#x)", v.run.Data[0])
	case kvmsys.ExitSystemEvent:
		m.mu.Lock()
		m.stop(-1, ErrGuestReset)
		m.mu.Unlock()
	default:
		return fmt.Errorf("unexpected KVM exit reason %d", r)
	}
	return nil
}

// allDeadLocked reports whether no vCPU can ever run again.
// Preconditions: m.mu must be held.
func (m *Machine) allDeadLocked() bool {
	for _, v := range m.vcpus {
		if v.state != stateDead && v.state != stateWaitSIPI {
			return false
		}
	}
	return true
}

// portOut dispatches a port write through the device table (devbus.go);
// writes to ports without a device are dropped.
// Preconditions: m.mu must be held.
func (m *Machine) portOut(port uint16, data []byte) {
	if d := m.devbus.Port(port); d != nil {
		d.Out(port, data)
	}
}

// portIn dispatches a port read. Absent devices float high (all ones),
// which is also how Linux's probe_8259A concludes there is no PIC.
// Preconditions: m.mu must be held.
func (m *Machine) portIn(port uint16, data []byte) {
	if d := m.devbus.Port(port); d != nil {
		d.In(port, data)
		return
	}
	for i := range data {
		data[i] = 0xFF
	}
}

// mmio dispatches a guest MMIO access (data is written back for reads)
// through the device table (devbus.go). Reads of addresses without a
// device return all ones; writes to them are dropped.
// Preconditions: m.mu must be held.
func (m *Machine) mmio(cpu int, addr uint64, data []byte, write bool) {
	dev, off := m.devbus.MMIO(cpu, addr)
	switch {
	case dev == nil && !write:
		for i := range data {
			data[i] = 0xFF
		}
	case dev == nil:
	case write:
		dev.Write(off, data)
	default:
		dev.Read(off, data)
	}
}

// KVM_INTERNAL_ERROR suberror and flag (linux/kvm.h).
const (
	internalErrorEmulation     = 1
	emulationFlagInstructBytes = 1
)

// emulationFallback handles KVM_EXIT_INTERNAL_ERROR: instructions KVM's
// emulator rejects under PVM (shared/PLATFORM.md). int3 in CPL0 (text_poke_bp)
// becomes an injected #BP after the instruction, as the CPU would deliver
// it; fwait (fpu__drop on every exec and exit) is skipped, since no x87
// exception is ever pending in the guest. Anything else is an error that
// names the bytes.
func (v *VCPU) emulationFallback() error {
	sub, words := kvmsys.InternalError(v.run)
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return fmt.Errorf("internal error %d, and get regs: %w", sub, err)
	}
	if sub != internalErrorEmulation {
		return fmt.Errorf("KVM internal error, suberror %d (data %x) at RIP %#x", sub, words, regs.RIP)
	}
	insn := v.instructionBytes(regs.RIP, words)
	switch {
	case len(insn) > 0 && insn[0] == 0xCC:
		regs.RIP++
		if err := kvm.SetRegs(uintptr(v.fd), regs); err != nil {
			return err
		}
		ev := &kvm.VCPUEvents{}
		if err := kvm.GetVCPUEvents(uintptr(v.fd), ev); err != nil {
			return fmt.Errorf("get vcpu events: %w", err)
		}
		ev.E = kvm.Exception{Inject: 1, Nr: 3}
		ev.Flags = 0
		if err := kvm.SetVCPUEvents(uintptr(v.fd), ev); err != nil {
			return fmt.Errorf("inject #BP: %w", err)
		}
		v.m.emulated("int3")
		return nil
	case len(insn) > 0 && insn[0] == 0x9B:
		regs.RIP++
		v.m.emulated("fwait")
		return kvm.SetRegs(uintptr(v.fd), regs)
	}
	return &EmulationError{VCPU: v.id, RIP: regs.RIP, Bytes: insn}
}

// instructionBytes returns the bytes of the failed instruction: from the
// exit when KVM supplies them (struct kvm_run.emulation_failure: u64 flags,
// u8 insn_size, u8 insn_bytes[15]), else read through the guest page
// tables.
func (v *VCPU) instructionBytes(rip uint64, words []uint64) []byte {
	if len(words) >= 3 && words[0]&emulationFlagInstructBytes != 0 {
		var b []byte
		for _, w := range words[1:3] {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
		if n := int(b[0]); n > 0 && n <= 15 {
			return b[1 : 1+n]
		}
	}
	t := &kvm.Translation{LinearAddress: rip}
	if err := kvm.Translate(uintptr(v.fd), t); err != nil || t.Valid == 0 {
		return nil
	}
	mem := v.m.mem.mem
	if t.PhysicalAddress+15 > uint64(len(mem)) {
		return nil
	}
	return append([]byte(nil), mem[t.PhysicalAddress:t.PhysicalAddress+15]...)
}

// emulated counts a userspace-emulated instruction (diagnostics).
func (m *Machine) emulated(what string) {
	m.log.Debug("emulated instruction in userspace", zap.String("insn", what))
}
