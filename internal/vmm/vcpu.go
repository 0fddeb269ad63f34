package vmm

import (
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"runtime"
	"sync/atomic"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// vcpuState is the explicit state of a vCPU's run loop.
type vcpuState int

const (
	// stateWaitSIPI: an application processor before its startup IPI (or
	// after INIT); it does not run.
	stateWaitSIPI vcpuState = iota
	// stateRunning: enters the guest with KVM_RUN.
	stateRunning
	// stateHalted: the guest executed HLT with interrupts enabled; waits
	// for an interrupt.
	stateHalted
	// stateDead: HLT with interrupts disabled, nothing can wake it.
	stateDead
)

func (s vcpuState) String() string {
	return [...]string{"wait-sipi", "running", "halted", "dead"}[s]
}

// VCPU is one virtual CPU and its run loop (one goroutine locked to an OS
// thread, so the thread can be signalled out of KVM_RUN).
type VCPU struct {
	m  *Machine
	id int
	fd int
	// page is the mmap'ed kvm_run structure.
	page []byte
	run  *kvm.RunData
	// tid is the OS thread running the loop, for kicks (0 before start).
	tid atomic.Int32
	// wake receives a token when the vCPU should re-check its state.
	wake chan struct{}
	// resetSregs is the architectural reset state KVM gave the vCPU, the
	// base for INIT and SIPI.
	resetSregs *kvm.Sregs

	// state is guarded by m.mu.
	state vcpuState
	// sipiVector is the pending startup vector when sipiPending.
	sipiVector  uint8
	sipiPending bool
}

func (m *Machine) newVCPU(id int) (*VCPU, error) {
	fd, err := kvm.CreateVCPU(uintptr(m.VMOf(id)), id)
	if err != nil {
		return nil, fmt.Errorf("create vcpu %d: %w", id, err)
	}
	size, err := kvm.GetVCPUMMmapSize(uintptr(m.kvmFD))
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("vcpu mmap size: %w", err)
	}
	page, err := unix.Mmap(int(fd), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("map kvm_run of vcpu %d: %w", id, err)
	}
	v := &VCPU{m: m, id: id, fd: int(fd), page: page, run: kvmsys.RunDataOf(page), wake: make(chan struct{}, 1)}
	if v.resetSregs, err = kvm.GetSregs(uintptr(fd)); err != nil {
		v.close()
		return nil, fmt.Errorf("vcpu %d sregs: %w", id, err)
	}
	t, err := kvmsys.GetSupportedCPUID(m.kvmFD)
	if err != nil {
		v.close()
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	applyCPUIDPolicy(t, id)
	if err := kvmsys.SetCPUID2(v.fd, t); err != nil {
		v.close()
		return nil, fmt.Errorf("vcpu %d KVM_SET_CPUID2: %w", id, err)
	}
	if id != 0 {
		v.state = stateWaitSIPI
	} else {
		v.state = stateRunning
	}
	return v, nil
}

func (v *VCPU) close() {
	if v.page != nil {
		unix.Munmap(v.page)
		v.page = nil
	}
	if v.fd >= 0 {
		unix.Close(v.fd)
		v.fd = -1
	}
}

// kick makes the vCPU re-check its state soon: wakes it from a wait, and
// forces it out of KVM_RUN (immediate_exit closes the window between its
// last check and entering the guest; the signal interrupts a running
// guest). SIGURG is the Go runtime's own preemption signal, so a stray one
// is harmless to the process.
func (v *VCPU) kick() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
	kvmsys.SetImmediateExit(v.run, true)
	if tid := v.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// init handles INIT: the vCPU stops and waits for a SIPI.
// Preconditions: m.mu must be held.
func (v *VCPU) init() {
	if v.id == 0 {
		return // Linux never INITs the BSP; ignoring it keeps it alive.
	}
	v.state = stateWaitSIPI
	v.kick()
}

// sipi handles a startup IPI: a vCPU waiting for one starts in real mode
// at vector<<12 (Intel SDM vol. 3, 8.4.4.1); a running one ignores it (the
// second SIPI of the INIT-SIPI-SIPI sequence).
// Preconditions: m.mu must be held.
func (v *VCPU) sipi(vector uint8) {
	if v.state != stateWaitSIPI {
		return
	}
	v.sipiVector, v.sipiPending = vector, true
	v.kick()
}

// startAt puts the vCPU in real mode at the SIPI vector's page.
func (v *VCPU) startAt(vector uint8) error {
	s := *v.resetSregs
	s.CS.Selector = uint16(vector) << 8
	s.CS.Base = uint64(vector) << 12
	if err := kvm.SetSregs(uintptr(v.fd), &s); err != nil {
		return fmt.Errorf("set sregs for SIPI: %w", err)
	}
	regs := &kvm.Regs{RFLAGS: 2, RIP: 0}
	if err := kvm.SetRegs(uintptr(v.fd), regs); err != nil {
		return fmt.Errorf("set regs for SIPI: %w", err)
	}
	return nil
}

// loop is the vCPU's run loop; it returns nil when the machine stops.
func (v *VCPU) loop() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	defer v.tid.Store(0)
	m := v.m
	for {
		// Cleared before the stop check, not after: a stop in between
		// would have its kick cleared and the guest would run on
		// (VCPU.Enter says more).
		kvmsys.SetImmediateExit(v.run, false)
		select {
		case <-m.stopped:
			return nil
		default:
		}
		m.mu.Lock()
		if m.ckptPending {
			m.mu.Unlock()
			if err := m.checkpointBarrier(v); err != nil {
				return err
			}
			continue
		}
		state := v.state
		switch state {
		case stateWaitSIPI:
			if v.sipiPending {
				v.sipiPending = false
				v.state = stateRunning
				m.mu.Unlock()
				if err := v.startAt(v.sipiVector); err != nil {
					return err
				}
				continue
			}
		case stateHalted:
			if _, ok := m.bus.LAPIC(v.id).PendingVector(); ok {
				v.state = stateRunning
				state = stateRunning
			}
		case stateRunning:
		case stateDead:
		default:
			panic(fmt.Sprintf("vcpu %d: impossible state %d", v.id, state))
		}
		if state != stateRunning {
			m.mu.Unlock()
			v.waitForWake()
			continue
		}
		if _, err := v.injectLocked(); err != nil {
			m.mu.Unlock()
			return err
		}
		m.mu.Unlock()
		err := kvmsys.Run(v.fd)
		if err == kvmsys.ErrInterrupted {
			continue
		}
		if err != nil {
			return err
		}
		if err := v.handleExit(); err != nil {
			return err
		}
	}
}

// waitForWake blocks until kicked or the machine stops.
func (v *VCPU) waitForWake() {
	select {
	case <-v.wake:
	case <-v.m.stopped:
	}
}

// injectLocked injects the LAPIC's highest pending vector if the guest can
// take it now, and otherwise asks KVM to exit at the next interrupt window.
// It reports whether it injected.
// Preconditions: m.mu must be held.
func (v *VCPU) injectLocked() (bool, error) {
	l := v.m.bus.LAPIC(v.id)
	vec, ok := l.PendingVector()
	if !ok {
		v.run.RequestInterruptWindow = 0
		return false, nil
	}
	ready := v.run.ReadyForInterruptInjection != 0 && v.run.IfFlag != 0
	if v.m.cfg.Deterministic {
		// kvm_run's readiness flags describe the state at the last
		// KVM_RUN return, which differs between a kick (record) and a
		// debug exit (replay) at the same guest point; derive readiness
		// from the guest state itself.
		var err error
		if ready, err = v.readyForInterrupt(); err != nil {
			return false, err
		}
	}
	if ready {
		if err := kvmsys.InjectInterrupt(v.fd, vec); err != nil {
			return false, fmt.Errorf("KVM_INTERRUPT vector %d: %w", vec, err)
		}
		l.Acknowledge(vec)
		v.run.RequestInterruptWindow = 0
		return true, nil
	}
	// In record/replay mode the interrupt waits for the next exit (or
	// chunk start) at which the guest can take it: where PVM reports an
	// interrupt window depends on how it batches emulated instructions,
	// which host signals and interrupts change (measured: replays diverged
	// with an interrupt taken at another instruction), while exits are
	// exact points.
	if !v.m.cfg.Deterministic {
		v.run.RequestInterruptWindow = 1
	}
	return false, nil
}

// rflagsIF is RFLAGS.IF.
const rflagsIF = 1 << 9

// readyForInterrupt reports whether the guest can take an external
// interrupt now: IF set, no STI/MOV-SS interrupt shadow, and no interrupt
// or exception already queued for delivery.
func (v *VCPU) readyForInterrupt() (bool, error) {
	regs, err := kvm.GetRegs(uintptr(v.fd))
	if err != nil {
		return false, err
	}
	if regs.RFLAGS&rflagsIF == 0 {
		return false, nil
	}
	ev, err := v.events()
	if err != nil {
		return false, err
	}
	return ev.I.Shadow == 0 && !interruptOrExceptionQueued(ev), nil
}

func (v *VCPU) events() (*kvm.VCPUEvents, error) {
	ev := &kvm.VCPUEvents{}
	if err := kvm.GetVCPUEvents(uintptr(v.fd), ev); err != nil {
		return nil, fmt.Errorf("get vcpu events: %w", err)
	}
	return ev, nil
}

// interruptOrExceptionQueued reports an interrupt or exception that KVM
// will deliver at the next entry. Without KVM_CAP_EXCEPTION_PAYLOAD
// (samsara does not enable it) a pending exception reads as injected.
func interruptOrExceptionQueued(ev *kvm.VCPUEvents) bool {
	return ev.I.Inject != 0 || ev.E.Inject != 0 || ev.E.Pending != 0
}

// eventQueued is interruptOrExceptionQueued, or an NMI queued.
func eventQueued(ev *kvm.VCPUEvents) bool {
	return interruptOrExceptionQueued(ev) || ev.N.Inject != 0 || ev.N.Pending != 0
}

// EventQueued reports whether KVM holds an event for delivery at the
// next entry: an exception an emulated instruction raised, or an
// interrupt or NMI not yet delivered. A vCPU kicked out of KVM_RUN there
// stands between an instruction and its event's delivery, a point no
// single step or breakpoint reaches again (all platforms; measured under
// PVM, where a kick after an emulated kernel access to a user page that
// faulted left the count one past the instruction and the #PF queued).
func (v *VCPU) EventQueued() (bool, error) {
	ev, err := v.events()
	if err != nil {
		return false, err
	}
	return eventQueued(ev), nil
}

// lockOSThread pins the calling goroutine to its OS thread: KVM_RUN must
// be interruptible by a signal to a known thread.
func lockOSThread() { runtime.LockOSThread() }
