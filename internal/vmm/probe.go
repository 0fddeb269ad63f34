package vmm

import (
	"errors"
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/pmc"
)

// HostCapability is one KVM capability samsara checks.
type HostCapability struct {
	Name     string
	Number   int
	Value    int  // KVM_CHECK_EXTENSION result
	Required bool // samsara cannot run without it
	Why      string
}

// HostReport is what `samsara probe` prints. Every field is a measurement
// (or says that it could not be made): nothing is assumed.
type HostReport struct {
	// KVMAvailable is whether the KVM device opened, answered
	// KVM_GET_API_VERSION and created a VM. When it is false, APIVersion, Capabilities,
	// InsnEmulation and the page trackers were not measured.
	KVMAvailable bool `json:"kvm_available"`
	// KVMError is why the KVM device is unusable ("" when it is usable),
	// KVMErrno the errno's name (ENOENT, EACCES, ...) and KVMAdvice what
	// to do about it (lines separated by "\n").
	KVMError  string `json:"kvm_error,omitempty"`
	KVMErrno  string `json:"kvm_errno,omitempty"`
	KVMAdvice string `json:"kvm_advice,omitempty"`

	APIVersion int    `json:"APIVersion,omitempty"`
	Platform   string // "pvm", "vmx", "svm" or "unknown"
	// Facts are the measurements Platform is named from, and PlatformSeen
	// says them in words.
	Facts        PlatformFacts `json:"platform_facts"`
	PlatformSeen string        `json:"platform_seen"`
	Capabilities []HostCapability
	// Counters maps a perf counter description to "ok" or what its
	// perf_event_open error means (CounterStatus).
	Counters map[string]string
	// InsnEmulation is whether the vCPU statistic exists.
	InsnEmulation bool
	// Backend is how this host counts guest progress (pmc.Backend), and
	// BackendNote what that means for recording.
	Backend     string `json:"progress_backend"`
	BackendNote string `json:"progress_backend_note"`
	// Problems are fatal: samsara cannot run on this host.
	Problems []string
}

// capabilities samsara checks (numbers from linux/kvm.h).
var capabilities = []HostCapability{
	{Name: "KVM_CAP_USER_MEMORY", Number: 3, Required: true, Why: "guest RAM in VMM memory"},
	{Name: "KVM_CAP_NR_MEMSLOTS", Number: 10, Required: true, Why: "two RAM slots around the legacy hole"},
	{Name: "KVM_CAP_SET_GUEST_DEBUG", Number: 23, Why: "single-step to land on a progress point (CPL0)"},
	{Name: "KVM_CAP_INTERNAL_ERROR_DATA", Number: 40, Why: "instruction bytes of emulation failures"},
	{Name: "KVM_CAP_VCPU_EVENTS", Number: 41, Required: true, Why: "inject #BP for int3; checkpoints"},
	{Name: "KVM_CAP_READONLY_MEM", Number: 81, Why: "read-only views"},
	{Name: "KVM_CAP_IMMEDIATE_EXIT", Number: 136, Required: true, Why: "race-free kicks out of KVM_RUN"},
	{Name: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", Number: 168, Why: "dirty-log page tracker"},
	{Name: "KVM_CAP_DIRTY_LOG_RING", Number: 192, Why: "dirty-ring page tracker"},
	{Name: "KVM_CAP_BINARY_STATS_FD", Number: 203, Why: "insn_emulation progress counter (PVM)"},
	{Name: "KVM_CAP_MEMORY_FAULT_INFO", Number: 232, Why: "faulting GPA on EFAULT exits"},
}

// ProbePaths are the files ProbeHostAt measures; tests point them
// elsewhere to simulate other hosts.
type ProbePaths struct {
	KVM       string // the KVM device, /dev/kvm
	CPUInfo   string // /proc/cpuinfo, for the vmx/svm CPUID flags
	SysModule string // /sys/module, for kvm_pvm
	Paranoid  string // /proc/sys/kernel/perf_event_paranoid
}

// DefaultProbePaths are the real host's files.
func DefaultProbePaths() ProbePaths {
	return ProbePaths{
		KVM:       "/dev/kvm",
		CPUInfo:   "/proc/cpuinfo",
		SysModule: "/sys/module",
		Paranoid:  "/proc/sys/kernel/perf_event_paranoid",
	}
}

// ProbeHost checks /dev/kvm, its capabilities, the virtualization
// platform and the performance counters.
func ProbeHost() *HostReport { return ProbeHostAt(DefaultProbePaths()) }

// ProbeHostAt is ProbeHost reading the given files.
func ProbeHostAt(p ProbePaths) *HostReport {
	r := &HostReport{Counters: map[string]string{}}
	facts := measureCPU(p)
	fd, err := openKVMDevice(p.KVM)
	if err != nil {
		r.KVMError = err.Error()
		var errno unix.Errno
		if errors.As(err, &errno) {
			r.KVMErrno = unix.ErrnoName(errno)
		}
		r.KVMAdvice = KVMAdvice(err, p.KVM, facts)
		r.Problems = append(r.Problems, "no usable "+p.KVM+": "+r.KVMError)
	} else {
		defer unix.Close(fd)
		facts.KVM = true
		r.KVMAvailable = true
		v, _ := kvm.GetAPIVersion(uintptr(fd))
		r.APIVersion = int(v)
		if v != 12 {
			r.Problems = append(r.Problems, fmt.Sprintf("KVM API version %d, samsara needs 12", v))
		}
		for _, c := range capabilities {
			c.Value, _ = kvmsys.CheckExtension(fd, c.Number)
			if c.Required && c.Value <= 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("%s is missing (%s)", c.Name, c.Why))
			}
			r.Capabilities = append(r.Capabilities, c)
		}
		r.InsnEmulation = probeInsnEmulation(fd)
	}
	r.Facts = facts
	r.Platform, r.PlatformSeen = NamePlatform(facts)
	paranoid := readParanoid(p.Paranoid)
	for name, ev := range map[string][2]uint64{
		"instructions (user)":                    {unix.PERF_TYPE_HARDWARE, unix.PERF_COUNT_HW_INSTRUCTIONS},
		"retired conditional branches, raw 0xd1": {unix.PERF_TYPE_RAW, pmc.RawRetiredCondBranches},
	} {
		cfd, err := pmc.OpenCounter(uint32(ev[0]), ev[1], 0)
		if err == nil {
			unix.Close(cfd)
		}
		r.Counters[name] = CounterStatus(err, paranoid)
	}
	ev, known := pmc.PMUEventFor(facts.Vendor, facts.Family, facts.Model)
	pmuErr := fmt.Errorf("no exact conditional-branch event is known for %s family %#x model %#x", facts.Vendor, facts.Family, facts.Model)
	if known {
		var cfd int
		if cfd, pmuErr = pmc.OpenGuestBranchCounter(ev.Config, 0); pmuErr == nil {
			unix.Close(cfd)
		}
		r.Counters[fmt.Sprintf("guest conditional branches, raw %#x", ev.Config)] = CounterStatus(pmuErr, paranoid)
	}
	b := pmc.ChooseBackend(r.Platform == "pvm" && r.InsnEmulation, pmuErr)
	r.Backend, r.BackendNote = b.String(), b.Describe(ev)
	return r
}

// openKVMDevice opens the KVM device and checks that it works: it must
// answer KVM_GET_API_VERSION and create a VM.
func openKVMDevice(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if _, err := kvm.GetAPIVersion(uintptr(fd)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("KVM_GET_API_VERSION on %s: %w", path, err)
	}
	vm, err := kvmsys.CreateVM(fd)
	if err != nil {
		unix.Close(fd)
		return -1, &createVMError{path: path, err: err}
	}
	unix.Close(vm)
	return fd, nil
}

// createVMError is a KVM device that opened but could not create a VM.
type createVMError struct {
	path string
	err  error
}

func (e *createVMError) Error() string { return "KVM_CREATE_VM on " + e.path + ": " + e.err.Error() }
func (e *createVMError) Unwrap() error { return e.err }

// PlatformFacts are the measurements the platform is named from.
type PlatformFacts struct {
	// KVM: the KVM device opened, answered KVM_GET_API_VERSION and
	// created a VM.
	KVM bool `json:"kvm"`
	// VMX, SVM: the CPUID flags (/proc/cpuinfo "flags").
	VMX bool `json:"vmx"`
	SVM bool `json:"svm"`
	// CPUFlagsRead: /proc/cpuinfo had a flags line (else VMX and SVM
	// are unknown, not absent).
	CPUFlagsRead bool `json:"cpu_flags_read"`
	// PVMModule: /sys/module/kvm_pvm exists.
	PVMModule bool `json:"kvm_pvm_module"`
	// Vendor, Family and Model are /proc/cpuinfo's vendor_id, "cpu
	// family" and "model" (which guest branch event a PMU counts).
	Vendor string `json:"cpu_vendor,omitempty"`
	Family int    `json:"cpu_family,omitempty"`
	Model  int    `json:"cpu_model,omitempty"`
}

// measureCPU reads the CPUID flags and the kvm_pvm module's presence.
func measureCPU(p ProbePaths) PlatformFacts {
	var f PlatformFacts
	if _, err := os.Stat(filepath.Join(p.SysModule, "kvm_pvm")); err == nil {
		f.PVMModule = true
	}
	b, _ := os.ReadFile(p.CPUInfo)
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch k = strings.TrimSpace(k); {
		case k == "vendor_id" && f.Vendor == "":
			f.Vendor = strings.TrimSpace(v)
		case k == "cpu family" && f.Family == 0:
			f.Family, _ = strconv.Atoi(strings.TrimSpace(v))
		case k == "model" && f.Model == 0:
			f.Model, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if k != "flags" {
			continue
		}
		f.CPUFlagsRead = true
		for _, flag := range strings.Fields(v) {
			switch flag {
			case "vmx":
				f.VMX = true
			case "svm":
				f.SVM = true
			}
		}
		break
	}
	return f
}

// NamePlatform names the virtualization platform from measured facts:
// "vmx" or "svm" for the CPUID flag with a usable KVM device, "pvm" for
// the kvm_pvm module with a usable KVM device and neither flag, else
// "unknown". seen says the facts in words.
func NamePlatform(f PlatformFacts) (platform, seen string) {
	var s []string
	if !f.KVM {
		s = append(s, "no usable /dev/kvm")
	} else {
		s = append(s, "/dev/kvm works")
	}
	switch {
	case !f.CPUFlagsRead:
		s = append(s, "CPU flags unreadable")
	case f.VMX && f.SVM:
		s = append(s, "CPU flags vmx and svm")
	case f.VMX:
		s = append(s, "CPU flag vmx")
	case f.SVM:
		s = append(s, "CPU flag svm")
	default:
		s = append(s, "no vmx/svm CPU flag")
	}
	if f.PVMModule {
		s = append(s, "kvm_pvm module present")
	} else {
		s = append(s, "no kvm_pvm module")
	}
	seen = strings.Join(s, "; ")
	switch {
	case !f.KVM:
		return "unknown", seen
	case f.VMX && !f.SVM:
		return "vmx", seen
	case f.SVM && !f.VMX:
		return "svm", seen
	case f.PVMModule && f.CPUFlagsRead && !f.VMX && !f.SVM:
		return "pvm", seen
	}
	return "unknown", seen
}

// KVMAdvice says what to do when the KVM device at path cannot be used
// (err is the open or KVM_GET_API_VERSION error), one sentence a line.
func KVMAdvice(err error, path string, f PlatformFacts) string {
	const hostVM = "samsara's tests and demo can run inside the emulated AMD-SVM host instead:\n" +
		"`make test` and `make demo` fall back to it automatically, and `make test-hostvm` runs every KVM test there."
	var cve *createVMError
	switch {
	case errors.As(err, &cve):
		return path + " opened but KVM could not create a VM (see dmesg).\n" + hostVM
	case errors.Is(err, unix.ENOENT):
		s := "This host has no KVM: " + path + " does not exist (e.g. a cloud VM without nested virtualization), so samsara cannot run a VM here.\n"
		if f.VMX || f.SVM {
			s += "The CPU has hardware virtualization: load KVM with `sudo modprobe kvm_intel` (VMX) or `sudo modprobe kvm_amd` (SVM).\n"
		}
		return s + hostVM
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return path + " exists but this user may not open it:\n" +
			"add yourself to the kvm group (`sudo usermod -aG kvm $USER`, then log in again), or run samsara as root."
	case errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		return path + " exists but no KVM driver is behind it: load one (`sudo modprobe kvm_intel`, `kvm_amd` or `kvm_pvm`).\n" + hostVM
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
		return path + " is not a KVM device (it does not answer KVM_GET_API_VERSION).\n" + hostVM
	}
	return hostVM
}

// CounterStatus says what a perf_event_open result means: "ok", "no
// hardware PMU" (ENOENT, EOPNOTSUPP, ENODEV: the kernel has no PMU driver
// for the event, e.g. in a VM without PMU virtualization), or the error,
// with perf_event_paranoid advice only for a permission error. paranoid
// is kernel.perf_event_paranoid ("" if unreadable).
func CounterStatus(err error, paranoid string) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENODEV):
		return "no hardware PMU (" + err.Error() + ")"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return err.Error() + paranoidAdvice(paranoid)
	}
	return err.Error()
}

// paranoidAdvice explains a permission error of perf_event_open. samsara
// counts user mode of its own threads only, which perf_event_paranoid
// allows up to 2; 3 and above (a distribution patch) forbid unprivileged
// perf_event_open altogether.
func paranoidAdvice(paranoid string) string {
	n, err := strconv.Atoi(paranoid)
	switch {
	case err != nil:
		return " (no permission: samsara needs kernel.perf_event_paranoid <= 2, or root)"
	case n > 2:
		return fmt.Sprintf(" (perf_event_paranoid is %d: `sudo sysctl kernel.perf_event_paranoid=2`, or run as root)", n)
	}
	return fmt.Sprintf(" (perf_event_paranoid is %d, which allows user-mode counters: a security policy (seccomp, LSM) refuses perf_event_open; run with CAP_PERFMON outside it)", n)
}

// readParanoid returns kernel.perf_event_paranoid, or "".
func readParanoid(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// probeInsnEmulation creates a throwaway VM and vCPU and looks for the
// insn_emulation statistic.
func probeInsnEmulation(kvmFD int) bool {
	vm, err := kvm.CreateVM(uintptr(kvmFD))
	if err != nil {
		return false
	}
	defer unix.Close(int(vm))
	cpu, err := kvm.CreateVCPU(vm, 0)
	if err != nil {
		return false
	}
	defer unix.Close(int(cpu))
	sfd, err := kvmsys.GetStatsFD(int(cpu))
	if err != nil {
		return false
	}
	s, err := pmc.OpenStats(sfd)
	if err != nil {
		unix.Close(sfd)
		return false
	}
	defer s.Close()
	return s.Has("insn_emulation")
}

// ProbePlatform returns "pvm", "vmx", "svm" or "unknown", named from the
// same measurements as ProbeHost (without its capability and counter
// checks).
func ProbePlatform() string {
	p := DefaultProbePaths()
	f := measureCPU(p)
	if fd, err := openKVMDevice(p.KVM); err == nil {
		unix.Close(fd)
		f.KVM = true
	}
	name, _ := NamePlatform(f)
	return name
}
