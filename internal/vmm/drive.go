package vmm

// What the recorders and the replayer (internal/session) drive: one vCPU
// entered once at a time, its exit handled, interrupts injected, its
// architectural state saved and restored; the machine's lock, virtual
// clock and timers. The session package decides when; this package does
// what a KVM machine does, and knows nothing of chunks, commits or logs.

import (
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"io"
	"reflect"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// ErrInterrupted is an entry into the guest that returned without an exit:
// a kick, a signal, or immediate_exit (KVM_RUN's EINTR).
var ErrInterrupted = kvmsys.ErrInterrupted

// Exit reasons a session tells apart (linux/kvm.h KVM_EXIT_*).
const (
	ExitIO            = kvmsys.ExitIO
	ExitDebug         = kvmsys.ExitDebug
	ExitHLT           = kvmsys.ExitHLT
	ExitMMIO          = kvmsys.ExitMMIO
	ExitIRQWindowOpen = kvmsys.ExitIRQWindowOpen
)

// YieldPort is the port the reference kernel writes to in every busy-wait
// when booted with samsara_yield= (guest-images/patches/0005): an exit a
// recorder without an instruction counter treats as a yield. 0x5a5 lies
// in no PC device's range (ISA and PCI legacy ports: 0x000-0x3ff, and
// QEMU's fw_cfg at 0x510 is not ours).
const YieldPort = 0x5a5

// TickPort is the port the reference kernel's periodic tick reads when
// booted with samsara_ticks= (guest-images/patches/0007): the guest
// clock in microseconds, 32 bits, wrapping. The tick advances jiffies by
// the periods that passed, so guest time keeps up with the machine's
// clock when ticks come late (a vCPU that ran user code without exits
// gets its tick at the recorder's next state stop). 0x5a8: the next
// 4-byte-aligned port after YieldPort, in no PC device's range either.
const TickPort = 0x5a8

// Guest RAM layout: RAM is two memory slots around the legacy hole, [0,
// LowMemEnd) and [HighMemStart, size), at the same offsets of the memory
// file (a session attaching its own views uses both).
const (
	LowMemEnd    = lowMemEnd
	HighMemStart = highMemStart
)

// KVM_SET_GUEST_DEBUG control bits (linux/kvm.h).
const (
	GuestDebugEnable     = kvmsys.GuestDebugEnable
	GuestDebugSingleStep = kvmsys.GuestDebugSingleStep
	GuestDebugUseSWBP    = 0x00010000
	GuestDebugUseHWBP    = 0x00020000
)

// ArchState is a vCPU's architectural state (registers, FPU, MSRs,
// pending events), what a checkpoint saves and a squash restores.
type ArchState = vcpuSnapshot

// ID is the vCPU's index, 0 for the boot processor.
func (v *VCPU) ID() int { return v.id }

// FD is the vCPU's KVM file descriptor.
func (v *VCPU) FD() int { return v.fd }

// TID is the OS thread the vCPU runs on (LockThread), 0 before.
func (v *VCPU) TID() int { return int(v.tid.Load()) }

// LockThread pins the calling goroutine to its OS thread for this vCPU and
// records the thread, so that kicks reach it.
func (v *VCPU) LockThread() {
	lockOSThread()
	v.tid.Store(int32(unix.Gettid()))
}

// Regs reads the general-purpose registers.
func (v *VCPU) Regs() (*kvm.Regs, error) { return kvm.GetRegs(uintptr(v.fd)) }

// Sregs reads the segment and control registers.
func (v *VCPU) Sregs() (*kvm.Sregs, error) { return kvm.GetSregs(uintptr(v.fd)) }

// MSRKernelGSBase is IA32_KERNEL_GS_BASE, the GS base SWAPGS exchanges
// (SDM vol. 4, table 2-2): the kernel's per-CPU base while the vCPU runs
// user code.
const MSRKernelGSBase = 0xC0000102

// MSR reads one model-specific register (KVM_GET_MSRS through
// internal/kvm: gokvm has no MSR ioctl).
func (v *VCPU) MSR(index uint32) (uint64, error) {
	m, err := kvmsys.GetMSRs(v.fd, []uint32{index})
	if err != nil {
		return 0, err
	}
	val, ok := m[index]
	if !ok {
		return 0, fmt.Errorf("KVM_GET_MSRS did not return MSR %#x", index)
	}
	return val, nil
}

// Enter runs the guest until its next exit; it returns ErrInterrupted
// when a kick came first.
//
// A stop of the machine is never lost here: the kick's immediate_exit is
// cleared first, then the stop is checked. A stop before the check sets
// immediate_exit again, so that KVM_RUN only completes pending I/O and
// returns EINTR, as a kick at that moment would make it; a stop after it
// sets immediate_exit itself (kick). Clearing after the check instead let
// a stop that came between them run the guest on until its next exit:
// for a vCPU spinning in guest user code, never.
func (v *VCPU) Enter() error { return v.EnterUnless(nil) }

// EnterUnless is Enter for a caller whose own reason to kick the vCPU
// (abort: a doomed chunk, another's claim) is checked, like the stop,
// after immediate_exit is cleared: true returns ErrInterrupted at once,
// and a kick for it that comes later interrupts the run.
func (v *VCPU) EnterUnless(abort func() bool) error {
	kvmsys.SetImmediateExit(v.run, false)
	select {
	case <-v.m.stopped:
		kvmsys.SetImmediateExit(v.run, true)
	default:
		if abort != nil && abort() {
			kvmsys.SetImmediateExit(v.run, true)
		}
	}
	return kvmsys.Run(v.fd)
}

// ExitReason is the reason of the last exit (KVM_EXIT_*).
func (v *VCPU) ExitReason() uint32 { return v.run.ExitReason }

// HandleExit handles the last exit: devices, halts, emulation fallbacks.
func (v *VCPU) HandleExit() error { return v.handleExit() }

// Kick makes the vCPU leave KVM_RUN (or not enter it) soon.
func (v *VCPU) Kick() { v.kick() }

// SetGuestDebug sets KVM_SET_GUEST_DEBUG's control and, when dr is not
// nil, the debug registers DR0-DR7.
func (v *VCPU) SetGuestDebug(control uint32, dr *[8]uint64) error {
	return kvmsys.SetGuestDebug(v.fd, control, dr)
}

// DebugExit is the last KVM_EXIT_DEBUG's exception vector, RIP and DR6
// (internal/kvm, DebugExit).
func (v *VCPU) DebugExit() (exception uint32, pc, dr6 uint64) { return kvmsys.DebugExit(v.run) }

// FPU reads the x87 and SSE state (KVM_GET_FPU), for a debugger's view.
func (v *VCPU) FPU() (*kvmsys.FPU, error) { return kvmsys.GetFPU(v.fd) }

// InstructionBytes reads up to 15 bytes of guest code at rip (a guest
// virtual address, through the vCPU's page tables); empty when unreadable.
func (v *VCPU) InstructionBytes(rip uint64) []byte { return v.instructionBytes(rip, nil) }

// CodeAddress returns the guest-physical address that the virtual
// address rip maps to in the vCPU's current page tables (KVM_TRANSLATE),
// for a software breakpoint where hardware breakpoints do not fire
// (measured: the emulated SVM host, where QEMU's TCG runs the nested
// guest).
func (v *VCPU) CodeAddress(rip uint64) (uint64, error) {
	t := &kvm.Translation{LinearAddress: rip}
	if err := kvm.Translate(uintptr(v.fd), t); err != nil {
		return 0, fmt.Errorf("KVM_TRANSLATE %#x: %w", rip, err)
	}
	if t.Valid == 0 || t.PhysicalAddress >= uint64(len(v.m.mem.mem)) {
		return 0, fmt.Errorf("code address %#x is not mapped to guest RAM", rip)
	}
	return t.PhysicalAddress, nil
}

// ProtectPage makes the 4 KiB guest page holding gpa inaccessible to the
// guest (none) or gives it back (KVM zaps its mapping on mprotect, through
// the MMU notifier). An instruction fetch or access the guest makes there
// while it is inaccessible ends KVM_RUN with EFAULT before the instruction
// executes (measured: ../shared/PLATFORM.md, "Stopping exactly";
// probes/prot_none_stops.c): a page-granular breakpoint where no
// breakpoint fires (the emulated SVM host). The caller gives the page back
// before anything else touches guest memory.
func (v *VCPU) ProtectPage(gpa uint64, none bool) error {
	const pageSize = 4096 // x86 base pages, the unit mprotect and KVM's NPT share
	page := gpa &^ (pageSize - 1)
	mem := v.m.mem.mem
	if page+pageSize > uint64(len(mem)) {
		return fmt.Errorf("guest page %#x is outside guest RAM", page)
	}
	prot := unix.PROT_READ | unix.PROT_WRITE
	if none {
		prot = unix.PROT_NONE
	}
	if err := unix.Mprotect(mem[page:page+pageSize], prot); err != nil {
		return fmt.Errorf("mprotect guest page %#x: %w", page, err)
	}
	return nil
}

// CompleteTrappedAccess handles the last exit when it is an MMIO exit
// inside the guest RAM page holding gpa that ProtectPage made
// inaccessible: KVM's instruction emulator, which could not reach the
// page, handed its access to userspace as device I/O (measured on PVM,
// where the guest kernel's instructions are emulated: the kernel's first
// touch of a protected page arrives so, not as EFAULT). It does the access
// against guest RAM, as KVM would have, and reports true; the next KVM_RUN
// finishes the instruction. The page must be accessible again.
func (v *VCPU) CompleteTrappedAccess(gpa uint64) bool {
	if v.run.ExitReason != kvmsys.ExitMMIO {
		return false
	}
	addr, data, write := kvmsys.MMIOExit(v.run)
	mem := v.m.mem.mem
	page := gpa &^ (pageSize - 1)
	end := addr + uint64(len(data))
	if addr&^(pageSize-1) != page || end > page+pageSize || end > uint64(len(mem)) {
		return false
	}
	if write {
		copy(mem[addr:], data)
	} else {
		copy(data, mem[addr:])
	}
	return true
}

// SetRegs sets the vCPU's general registers.
func (v *VCPU) SetRegs(r *kvm.Regs) error { return kvm.SetRegs(uintptr(v.fd), r) }

// SetSregs writes the segment and control registers (a trace executes a
// user SYSCALL itself: internal/session, trace_user.go).
func (v *VCPU) SetSregs(s *kvm.Sregs) error { return kvm.SetSregs(uintptr(v.fd), s) }

// StatsFD opens the vCPU's KVM binary statistics (KVM_GET_STATS_FD).
func (v *VCPU) StatsFD() (int, error) { return kvmsys.GetStatsFD(v.fd) }

// SaveArch reads the vCPU's architectural state.
func (v *VCPU) SaveArch() (ArchState, error) { return v.snapshot() }

// RestoreArch writes an architectural state back (not the run state).
func (v *VCPU) RestoreArch(s *ArchState) error { return v.restoreArch(s) }

// ArchMismatch names the parts of got that differ from want ("" when
// equal), ignoring the run state and KVM_GET_FPU's view (which does not
// round-trip on these hosts; XSAVE does: internal/kvm, Xsave).
func ArchMismatch(got, want *ArchState) string {
	g := *got
	g.State, g.FPU = want.State, want.FPU
	if reflect.DeepEqual(&g, want) {
		return ""
	}
	return fmt.Sprintf("regs equal %v, sregs equal %v, events %v vs %v, msrs %v vs %v, xsave equal %v",
		g.Regs == want.Regs, g.Sregs == want.Sregs, g.Events, want.Events, g.MSRs, want.MSRs, reflect.DeepEqual(g.Xsave, want.Xsave))
}

// BeginChunk is the start of every chunk in record and replay alike: the
// pending I/O of the last exit is completed (FlushPendingIO), and an AP
// whose startup IPI arrived is put at its start vector.
func (v *VCPU) BeginChunk() error {
	if err := v.FlushPendingIO(); err != nil {
		return err
	}
	v.m.mu.Lock()
	startSIPI := v.state == stateWaitSIPI && v.sipiPending
	if startSIPI {
		v.sipiPending, v.state = false, stateRunning
	}
	v.m.mu.Unlock()
	if startSIPI {
		return v.startAt(v.sipiVector)
	}
	return nil
}

// FlushPendingIO completes the I/O of the vCPU's last exit (KVM applies the
// data of a port or MMIO read at the next KVM_RUN) without running guest
// code: KVM_RUN with immediate_exit completes pending I/O, then returns
// EINTR (Documentation/virt/kvm/api.rst, immediate_exit). After it the
// registers are the guest's real state: a chunk snapshot or a digest taken
// then does not depend on when the completion would have happened.
func (v *VCPU) FlushPendingIO() error {
	kvmsys.SetImmediateExit(v.run, true)
	err := kvmsys.Run(v.fd)
	kvmsys.SetImmediateExit(v.run, false)
	if errors.Is(err, kvmsys.ErrInterrupted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("complete pending I/O: %w", err)
	}
	return fmt.Errorf("completing the pending I/O of vcpu %d made another exit (reason %d)", v.id, v.run.ExitReason)
}

// Inject injects the local APIC's highest pending vector if the guest can
// take it now. It returns the vector that was pending (if any) and
// whether it was injected.
func (v *VCPU) Inject() (vec uint8, injected bool, err error) {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	vec, _ = v.m.bus.LAPIC(v.id).PendingVector()
	injected, err = v.injectLocked()
	return vec, injected, err
}

// PendingVector is the local APIC's highest pending vector, if any.
func (v *VCPU) PendingVector() (uint8, bool) {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return v.m.bus.LAPIC(v.id).PendingVector()
}

// Unacknowledge undoes the injection of vec (a squashed chunk's): the
// vector is requested again.
func (v *VCPU) Unacknowledge(vec uint8) {
	v.m.mu.Lock()
	v.m.bus.LAPIC(v.id).Unacknowledge(vec)
	v.m.mu.Unlock()
}

// ReadyForInterrupt reports whether the guest can take an external
// interrupt now (readyForInterrupt).
func (v *VCPU) ReadyForInterrupt() (bool, error) { return v.readyForInterrupt() }

// RunnableLocked reports whether v can run now, making a halted vCPU with
// a pending interrupt running again.
// Preconditions: the machine lock must be held.
func (v *VCPU) RunnableLocked() bool {
	switch v.state {
	case stateRunning:
		return true
	case stateHalted:
		if _, ok := v.m.bus.LAPIC(v.id).PendingVector(); ok {
			v.state = stateRunning
			return true
		}
	case stateWaitSIPI:
		return v.sipiPending
	case stateDead:
	default:
		panic(fmt.Sprintf("vcpu %d: impossible state %d", v.id, v.state))
	}
	return false
}

// Running reports whether the vCPU is running (not halted, dead or
// waiting for a startup IPI).
func (v *VCPU) Running() bool {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return v.state == stateRunning
}

// StateLocked names the vCPU's run state.
// Preconditions: the machine lock must be held.
func (v *VCPU) StateLocked() string { return v.state.String() }

// ExitIsYield reports whether the last exit is a write to YieldPort: the
// guest kernel is busy-waiting (for another vCPU, usually).
func (v *VCPU) ExitIsYield() bool {
	if v.run.ExitReason != kvmsys.ExitIO {
		return false
	}
	out, _, port, _, _ := kvmsys.IOExit(v.run, v.page)
	return out && port == YieldPort
}

// ExitWritesRAM reports whether handling the current exit may write guest
// memory: a virtio register write (queue notification: the device writes
// data and the used ring).
func (v *VCPU) ExitWritesRAM() bool {
	if v.run.ExitReason != kvmsys.ExitMMIO || v.m.blk == nil {
		return false
	}
	addr, _, write := kvmsys.MMIOExit(v.run)
	return write && addr >= virtioAddr && addr < virtioAddr+virtioSize
}

// SaveCheckpoint writes a checkpoint of the machine as it stands (the
// format of run --save-checkpoint), for a debugger that wants to come
// back here without replaying from the start. Each vCPU's pending I/O is
// completed first, as a chunk's start would (BeginChunk).
// Preconditions: no vCPU is in the guest (a session between chunks).
func (m *Machine) SaveCheckpoint(path string) error {
	for _, v := range m.vcpus {
		m.mu.Lock()
		sipi := v.state == stateWaitSIPI
		m.mu.Unlock()
		if sipi {
			continue
		}
		if err := v.FlushPendingIO(); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saveCheckpointLocked(path)
}

// VCPUs are the machine's vCPUs, by index.
func (m *Machine) VCPUs() []*VCPU { return m.vcpus }

// Lock takes the machine lock: device state, vCPU run states, the clock.
func (m *Machine) Lock() { m.mu.Lock() }

// Unlock releases the machine lock.
func (m *Machine) Unlock() { m.mu.Unlock() }

// Deterministic reports whether the machine was built for record/replay.
func (m *Machine) Deterministic() bool { return m.cfg.Deterministic }

// Stopped is closed when the machine stops (power off or error).
func (m *Machine) Stopped() <-chan struct{} { return m.stopped }

// IsStopped reports whether the machine has stopped.
func (m *Machine) IsStopped() bool { return m.isStopped() }

// Stop ends the run with err (nil: with the guest's exit status so far);
// the first stop wins. Every vCPU is kicked.
func (m *Machine) Stop(err error) {
	m.mu.Lock()
	m.stop(m.status, err)
	m.mu.Unlock()
}

// Outcome is the guest's exit status and the error that stopped the
// machine, once stopped.
func (m *Machine) Outcome() (status int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status, m.err
}

// VirtualTime is the deterministic clock's time, in nanoseconds.
func (m *Machine) VirtualTime() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clock.vt
}

// AdvanceTime moves virtual time forward by dt nanoseconds; with fire,
// the timers that became due fire at once (in the same critical section),
// else at the next PollTimers.
func (m *Machine) AdvanceTime(dt int64, fire bool) {
	m.mu.Lock()
	m.clock.vt += dt
	if fire {
		m.pollTimersLocked()
	}
	m.mu.Unlock()
}

// PollTimers fires the timers that are due.
func (m *Machine) PollTimers() {
	m.mu.Lock()
	m.pollTimersLocked()
	m.mu.Unlock()
}

// AdvanceIdleLocked jumps virtual time to the earliest timer deadline when
// no vCPU can run, and fires it. It returns false when nothing is armed:
// the guest can never wake up.
// Preconditions: the machine lock must be held.
func (m *Machine) AdvanceIdleLocked() bool {
	next, ok := m.nextDeadlineLocked()
	if !ok {
		return false
	}
	if next > m.clock.vt {
		m.clock.vt = next
	}
	m.pollTimersLocked()
	return true
}

// NextDeadline is the earliest armed device timer deadline, in virtual
// nanoseconds.
func (m *Machine) NextDeadline() (next int64, armed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nextDeadlineLocked()
}

// NDEErr is the first error of the non-determinism source (a log read or
// write that failed), nil if none.
func (m *Machine) NDEErr() error { return m.cfg.NDE.Err() }

// Marks are the kernel's privilege-change addresses (boot.go).
func (m *Machine) Marks() KernelMarks { return m.marks }

// Spins are the kernel functions where a vCPU waits for another.
func (m *Machine) Spins() []KernelRange { return m.spins }

// Memory is guest RAM as the VMM maps it.
func (m *Machine) Memory() []byte { return m.mem.mem }

// MemFD is the file behind guest RAM (a memfd).
func (m *Machine) MemFD() int { return m.mem.fd }

// HashMemory writes guest RAM into h, zero pages included.
func (m *Machine) HashMemory(h io.Writer) error { return m.mem.hashInto(h) }

// VMOf is the KVM VM vCPU id belongs to: its own with SeparateVMs.
func (m *Machine) VMOf(id int) int {
	if len(m.vms) > 0 {
		return m.vms[id]
	}
	return m.vmFD
}

// HasSeparateVMs reports whether the machine was built with SeparateVMs.
func (m *Machine) HasSeparateVMs() bool { return len(m.vms) > 0 }

// RequestedVectors snapshots every local APIC's IRR.
func (m *Machine) RequestedVectors() [][8]uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][8]uint32, len(m.vcpus))
	for i := range m.vcpus {
		out[i] = m.bus.LAPIC(i).RequestedVectors()
	}
	return out
}

// SetStarted records the wall time the guest started running (a session's
// start, for Result.Elapsed).
func (m *Machine) SetStarted(t time.Time) { m.started = t }

// Result is how the run ended so far: exit status and elapsed wall time.
func (m *Machine) Result() Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Result{ExitStatus: m.status, Elapsed: time.Since(m.started)}
}

// DeviceAccess is a port or MMIO access that exited to the VMM.
type DeviceAccess struct {
	MMIO, Write bool
	// Addr is the port or the guest-physical address.
	Addr uint64
	// Size is the element size, Count the elements (a string
	// instruction moves several).
	Size, Count int
	// Data is what the guest wrote, or, once the exit is handled, what
	// the device answered a read with (a copy).
	Data []byte
}

// DeviceAccess returns the last exit's device access, if it was one.
func (v *VCPU) DeviceAccess() (DeviceAccess, bool) {
	switch v.run.ExitReason {
	case kvmsys.ExitIO:
		out, size, port, count, data := kvmsys.IOExit(v.run, v.page)
		return DeviceAccess{Write: out, Addr: uint64(port), Size: size, Count: count, Data: append([]byte(nil), data...)}, true
	case kvmsys.ExitMMIO:
		addr, data, write := kvmsys.MMIOExit(v.run)
		return DeviceAccess{MMIO: true, Write: write, Addr: addr, Size: len(data), Count: 1, Data: append([]byte(nil), data...)}, true
	}
	return DeviceAccess{}, false
}

// ObserveDMA sets f to be told of every write of a device into guest
// memory (the virtio block device's; the other devices write none), with
// the bytes written; nil stops it. f runs while an exit is handled, under
// the machine lock.
func (m *Machine) ObserveDMA(f func(pa uint64, data []byte)) {
	if m.blk != nil {
		m.blk.ObserveDMA(f)
	}
}

// ExitSummary describes the last exit for a divergence report: its
// reason, and for port and MMIO exits the access (port or guest-physical
// address, direction, data).
func (v *VCPU) ExitSummary() string {
	switch v.run.ExitReason {
	case kvmsys.ExitIO:
		out, size, port, count, data := kvmsys.IOExit(v.run, v.page)
		dir := "in"
		if out {
			dir = "out"
		}
		return fmt.Sprintf("port %s %#x size %d count %d data %x", dir, port, size, count, data)
	case kvmsys.ExitMMIO:
		addr, data, write := kvmsys.MMIOExit(v.run)
		dir := "read"
		if write {
			dir = "write"
		}
		return fmt.Sprintf("MMIO %s %#x data %x", dir, addr, data)
	case kvmsys.ExitHLT:
		return "HLT"
	}
	return fmt.Sprintf("exit reason %d", v.run.ExitReason)
}
