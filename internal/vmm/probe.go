package vmm

import (
	"fmt"
	"os"
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

// HostReport is what `samsara probe` prints.
type HostReport struct {
	APIVersion   int
	Platform     string // "pvm", "vmx", "svm" or "unknown"
	Capabilities []HostCapability
	// Counters maps a perf counter description to "ok" or the error.
	Counters map[string]string
	// InsnEmulation is whether the vCPU statistic exists.
	InsnEmulation bool
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

// ProbeHost checks /dev/kvm, its capabilities, the virtualization
// platform and the performance counters.
func ProbeHost() *HostReport {
	r := &HostReport{Platform: detectPlatform(), Counters: map[string]string{}}
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("open /dev/kvm: %v%s", err, kvmFixIt(err)))
	} else {
		defer unix.Close(fd)
		v, _ := kvm.GetAPIVersion(uintptr(fd))
		r.APIVersion = int(v)
		if v != 12 {
			r.Problems = append(r.Problems, fmt.Sprintf("KVM API version %d, samsara needs 12", v))
		}
		for _, c := range capabilities {
			c.Value, _ = checkExtension(fd, c.Number)
			if c.Required && c.Value <= 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("%s is missing (%s)", c.Name, c.Why))
			}
			r.Capabilities = append(r.Capabilities, c)
		}
		r.InsnEmulation = probeInsnEmulation(fd)
	}
	for name, ev := range map[string][2]uint64{
		"instructions (user)":                    {unix.PERF_TYPE_HARDWARE, unix.PERF_COUNT_HW_INSTRUCTIONS},
		"retired conditional branches, raw 0xd1": {unix.PERF_TYPE_RAW, pmc.RawRetiredCondBranches},
	} {
		cfd, err := pmc.OpenCounter(uint32(ev[0]), ev[1], 0)
		if err != nil {
			r.Counters[name] = err.Error() + perfFixIt()
			continue
		}
		unix.Close(cfd)
		r.Counters[name] = "ok"
	}
	return r
}

// perfFixIt explains how to allow perf counters.
func perfFixIt() string {
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err == nil && strings.TrimSpace(string(b)) > "1" {
		return " (perf_event_paranoid is " + strings.TrimSpace(string(b)) + ": `sudo sysctl kernel.perf_event_paranoid=1`)"
	}
	return ""
}

// detectPlatform tells PVM from hardware virtualization.
func detectPlatform() string {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "pvm"
	}
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "flags") {
			f := " " + l + " "
			switch {
			case strings.Contains(f, " vmx "):
				return "vmx"
			case strings.Contains(f, " svm "):
				return "svm"
			}
		}
	}
	return "unknown"
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
	sfd, err := getStatsFD(int(cpu))
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

// ProbePlatform returns "pvm", "vmx", "svm" or "unknown".
func ProbePlatform() string { return detectPlatform() }
