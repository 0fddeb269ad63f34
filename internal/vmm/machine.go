package vmm

import (
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"io"
	"os"
	"sync"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/devices"
	"golang.org/x/sys/unix"
)

// Limits on the machine's shape.
const (
	// MaxCPUs matches the reference kernel's CONFIG_NR_CPUS=8.
	MaxCPUs = 8
	// maxInitrdBytes bounds the initrd we load (the reference one is a few
	// hundred KiB; unpacking costs ~30 ms/KiB under PVM).
	maxInitrdBytes = 512 << 20
)

// Guest-physical addresses of the MMIO devices (above RAM, below 4 GiB).
const (
	lapicAddr  = 0xFEE00000
	ioapicAddr = 0xFEC00000
	virtioAddr = 0xD0000000
	// virtioSize is one page, the virtio-mmio register window.
	virtioSize = 0x1000
)

// IOAPIC pins of the legacy devices (MP table: ISA IRQ n -> pin n, except
// the PIT's IRQ 0 -> pin 2, the PC convention Linux assumes).
const (
	pinPIT    = 2
	pinUART   = 4
	pinVirtio = 5
)

// Config is the machine to build.
type Config struct {
	Kernel string   // ELF vmlinux
	Initrd string   // initramfs (cpio), optional
	Disk   string   // raw disk image for virtio-blk, optional; never written
	CPUs   int      // number of vCPUs, 1..MaxCPUs
	Mem    uint64   // guest RAM bytes
	Append string   // extra kernel command-line arguments
	Argv   []string // program for init to run; empty = reference workload
	// Platform is the host's virtualization as ProbePlatform names it
	// ("pvm", "svm", "vmx"), which shapes the cold-boot command line
	// (GuestCmdline); "" probes it. Replay passes the recording's, so a
	// cold boot is given the command line it was recorded with.
	Platform string
	// Console receives the guest's serial output.
	Console io.Writer
	// SaveCheckpoint, when set, is the file to save the machine to at the
	// guest's first checkpoint request.
	SaveCheckpoint string
	// FromCheckpoint, when set, resumes from this checkpoint instead of
	// booting Kernel.
	FromCheckpoint string
	// Logger for diagnostics; nil means no logging.
	Logger *zap.Logger
	// Deterministic selects virtual time and the serialized scheduler
	// (record and replay); false is a free-running `run`.
	Deterministic bool
	// NDE are the non-determinism hooks (an internal/nde Source, which
	// logs or replays what the host gives the guest; nil: the host's
	// clock, as in a plain run).
	NDE NonDeterminism
	// SeparateVMs builds the machine for the parallel recorder
	// (internal/session): every vCPU in a KVM VM of its own (VMOf), whose
	// memory slots the recorder attaches itself (private views of guest
	// memory; internal/ept), so each vCPU has its own second-level page
	// tables.
	SeparateVMs bool
}

// NonDeterminism is what the machine asks the host for that a replay must
// give back the same (internal/nde records and replays it).
type NonDeterminism interface {
	// WallTime is the wall-clock time vCPU cpu reads (the RTC).
	WallTime(cpu int) time.Time
	// Err is the first error of recording or replaying an input.
	Err() error
}

// hostClock is NonDeterminism without a log: the host's clock.
type hostClock struct{}

func (hostClock) WallTime(int) time.Time { return time.Now() }
func (hostClock) Err() error             { return nil }

// Result is how a guest run ended.
type Result struct {
	ExitStatus int           // the guest program's exit status
	Elapsed    time.Duration // wall time from start to power-off
	// BootToInit is the wall time until the guest's first checkpoint
	// request (init started), zero if it never asked.
	BootToInit time.Duration
}

// Machine is one guest: memory, vCPUs and devices.
type Machine struct {
	cfg Config
	log *zap.Logger

	kvmFD, vmFD int
	mem         *guestMemory
	vcpus       []*VCPU
	clock       *machineClock
	cmdline     string
	// marks: kernel addresses of privilege changes (boot.go).
	marks KernelMarks
	// spins: kernel functions where a vCPU waits for another (det_spin.go).
	spins []KernelRange

	// mu serializes every device access and the machine's run state.
	mu sync.Mutex
	// bus connects the LAPICs and the IOAPIC.
	bus    *devices.APICBus
	ioapic *devices.IOAPIC
	pit    *devices.PIT
	uart   *devices.UART
	rtc    *devices.RTC
	pic    devices.PIC
	blk    *devices.VirtioBlock
	ctl    *controlPage
	// devbus routes port and MMIO exits to the devices above (devbus.go).
	devbus *devices.Bus
	// timed lists every device with a timer, for the timer loop.
	timed []devices.Timed
	// stopped is closed when the machine stops (power off or error).
	stopped chan struct{}
	// status is the exit status once stopped.
	status int
	// err is the fatal error that stopped the machine, if any.
	err error
	// started is the wall time the guest started running.
	started time.Time
	// initAt is the wall time of the first checkpoint request.
	initAt time.Time
	// ckptPending is set by a checkpoint request until it is handled.
	ckptPending bool
	// ckptDone is set once a checkpoint was saved (only the first request
	// of a run is honoured).
	ckptDone bool
	// ckptArrived counts vCPUs parked at the checkpoint barrier.
	ckptArrived int
	// ckptErr is the result of the last checkpoint save.
	ckptErr error
	// ckptCond (on mu) releases vCPUs parked at the checkpoint barrier.
	ckptCond *sync.Cond

	// vms[i] is vCPU i's own KVM VM (Config.SeparateVMs), else empty.
	vms []int
	// dirtyLog holds one KVM_GET_DIRTY_LOG bitmap per RAM memslot once
	// StartDirtyLog turned the log on (dirty.go); nil before.
	dirtyLog [][]uint64
	// timerWake is poked when a timer may have been reprogrammed.
	timerWake chan struct{}
}

// New builds a machine from cfg: validates inputs, creates the VM and
// vCPUs, loads the kernel (or the checkpoint) and wires the devices.
func New(cfg Config) (_ *Machine, err error) {
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return nil, fmt.Errorf("--cpus %d: must be between 1 and %d", cfg.CPUs, MaxCPUs)
	}
	if len(encodeCommand(cfg.Argv)) > maxCommandBytes {
		return nil, fmt.Errorf("program arguments are too long: %d bytes, at most %d", len(encodeCommand(cfg.Argv)), maxCommandBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	m := &Machine{
		cfg:       cfg,
		log:       cfg.Logger.Named("vmm"),
		kvmFD:     -1,
		vmFD:      -1,
		stopped:   make(chan struct{}),
		timerWake: make(chan struct{}, 1),
	}
	m.ckptCond = sync.NewCond(&m.mu)
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if cfg.FromCheckpoint != "" {
		return m, m.restoreFromFile(cfg.FromCheckpoint)
	}
	if err := m.build(); err != nil {
		return nil, err
	}
	if err := m.bootKernel(); err != nil {
		return nil, err
	}
	return m, nil
}

// build creates the VM, memory, vCPUs and devices (shared by cold boot
// and checkpoint restore).
func (m *Machine) build() error {
	var disk devices.BlockBackend
	if m.cfg.Disk != "" {
		o, err := devices.NewOverlay(m.cfg.Disk)
		if err != nil {
			return fmt.Errorf("disk image: %w", err)
		}
		disk = o
	}
	if err := m.openKVM(); err != nil {
		return err
	}
	mem, err := newGuestMemory(m.cfg.Mem)
	if err != nil {
		return err
	}
	m.mem = mem
	if err := mem.register(m.vmFD); err != nil {
		return err
	}
	if m.cfg.SeparateVMs {
		for i := 0; i < m.cfg.CPUs; i++ {
			vm, err := kvmsys.CreateVM(m.kvmFD)
			if err != nil {
				return fmt.Errorf("create VM of vcpu %d: %w", i, err)
			}
			m.vms = append(m.vms, vm)
		}
	}
	m.clock = newMachineClock(m.cfg.Deterministic)
	m.bus = devices.NewAPICBus(m.cfg.CPUs, m.clock, machineHooks{m})
	m.ioapic = devices.NewIOAPIC(m.bus)
	m.bus.SetIOAPIC(m.ioapic)
	m.pit = devices.NewPIT(m.clock, m.ioapic, pinPIT)
	m.uart = devices.NewUART(m.cfg.Console, m.ioapic, pinUART)
	if m.cfg.NDE == nil {
		m.cfg.NDE = hostClock{}
	}
	m.rtc = devices.NewRTC(func() time.Time { return m.cfg.NDE.WallTime(0) })
	if disk != nil {
		m.blk = devices.NewVirtioBlock(m.mem.mem, disk, m.ioapic, pinVirtio)
	}
	m.ctl = &controlPage{command: encodeCommand(m.cfg.Argv), hooks: machineHooks{m}}
	m.newDevBus()
	m.timed = []devices.Timed{m.pit}
	for i := 0; i < m.cfg.CPUs; i++ {
		m.timed = append(m.timed, m.bus.LAPIC(i))
	}
	for i := 0; i < m.cfg.CPUs; i++ {
		v, err := m.newVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, v)
	}
	return nil
}

// openKVM opens /dev/kvm and creates the VM, with fix-it messages.
func (m *Machine) openKVM() error {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w%s", err, kvmFixIt(err))
	}
	m.kvmFD = fd
	if v, err := kvm.GetAPIVersion(uintptr(fd)); err != nil || v != 12 {
		return fmt.Errorf("KVM API version %d (%v): samsara needs version 12", v, err)
	}
	vm, err := kvmsys.CreateVM(fd)
	if err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	m.vmFD = vm
	return nil
}

// kvmFixIt tells the user how to get /dev/kvm access.
func kvmFixIt(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return " (no /dev/kvm: enable virtualization and load the kvm module, e.g. `modprobe kvm_intel` or `kvm_amd`)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return " (no permission: add yourself to the kvm group, `sudo usermod -aG kvm $USER`, then log in again)"
	}
	return ""
}

// GuestCmdline is the kernel command line samsara gives the reference
// guest on platform (ProbePlatform's name), before the user's --append.
func GuestCmdline(withDisk bool, platform string) string {
	s := "console=ttyS0 8250.nr_uarts=1 " +
		// lpj: udelay/mdelay are emulated busy loops under PVM; 10000
		// (PLATFORM.md) keeps SMP bring-up delays short, and our devices
		// need no real delays.
		"lpj=10000 " +
		// Features the emulator cannot run or that break determinism
		// (cpuid.go); noxsave and nox2apic have their own switches.
		"noxsave nox2apic clearcpuid=" + clearcpuidArg() + " " +
		// rodata=off: mark_rodata_ro took ~185 s of emulated page-attribute
		// changes (PLATFORM.md). mitigations=off: no IBRS/retpoline MSR
		// traffic through the emulator.
		"rodata=off mitigations=off " +
		// idle=halt: idle CPUs exit to the VMM. no_timer_check: the IOAPIC
		// timer check busy-waits on emulated delays.
		"idle=halt no_timer_check " +
		// A panic reboots, which the VMM turns into an error exit.
		"panic=-1 quiet " +
		// The tick counts the periods the machine's clock says passed
		// (TickPort, kernel patch 0007): guest time keeps up when a
		// recorder delivers a tick late.
		fmt.Sprintf("samsara_ticks=%#x", TickPort)
	if withDisk {
		s += fmt.Sprintf(" virtio_mmio.device=4K@%#x:%d", virtioAddr, pinVirtio)
	}
	if platform != "pvm" {
		// Busy-waits exit to the yield port (drive.go, YieldPort; kernel
		// patch 0005): on hardware virtualization the recorders have no
		// counter to preempt a spinning guest kernel with. Under PVM the
		// emulated kernel is counted exactly and the spin checks do it.
		// Measured in the emulated SVM host on 2026-12-06: 8 of 8 2-vCPU
		// cold boots with it under run, and race, threads2 and timers
		// recorded on 2 vCPUs and replayed matched (2 replays each); one
		// of three cold boots reset the guest the day before (cause not
		// found, README "Platform notes").
		s += fmt.Sprintf(" samsara_yield=%#x", YieldPort)
	}
	return s
}

// Close releases the machine's resources.
func (m *Machine) Close() {
	for _, v := range m.vcpus {
		v.close()
	}
	m.vcpus = nil
	for _, fd := range m.vms {
		unix.Close(fd)
	}
	m.vms = nil
	if m.mem != nil {
		m.mem.close()
		m.mem = nil
	}
	if m.vmFD >= 0 {
		unix.Close(m.vmFD)
		m.vmFD = -1
	}
	if m.kvmFD >= 0 {
		unix.Close(m.kvmFD)
		m.kvmFD = -1
	}
}

// machineHooks adapts the machine to the device callback interfaces.
type machineHooks struct{ m *Machine }

// Kick wakes cpu because an interrupt became pending for it.
// Preconditions: m.mu must be held (called from device code).
func (h machineHooks) Kick(cpu int) { h.m.vcpus[cpu].kick() }

// InitCPU handles an INIT IPI.
// Preconditions: m.mu must be held.
func (h machineHooks) InitCPU(cpu int) { h.m.vcpus[cpu].init() }

// StartCPU handles a startup IPI.
// Preconditions: m.mu must be held.
func (h machineHooks) StartCPU(cpu int, vector uint8) { h.m.vcpus[cpu].sipi(vector) }

func (h machineHooks) powerOff(status int) { h.m.stop(status, nil) }

func (h machineHooks) checkpointRequested(cpu int) {
	m := h.m
	if m.initAt.IsZero() {
		m.initAt = time.Now()
	}
	if m.cfg.SaveCheckpoint != "" && !m.ckptDone {
		m.ckptPending = true
		for _, v := range m.vcpus {
			v.kick()
		}
	}
}

// stop ends the run with status or err (the first call wins) and kicks
// every vCPU out of the guest.
// Preconditions: m.mu must be held.
func (m *Machine) stop(status int, err error) {
	select {
	case <-m.stopped:
		return
	default:
	}
	m.status, m.err = status, err
	close(m.stopped)
	m.ckptCond.Broadcast()
	for _, v := range m.vcpus {
		v.kick()
	}
}

// Cmdline is the kernel command line the machine booted with (from the
// checkpoint when resumed).
func (m *Machine) Cmdline() string { return m.cmdline }
