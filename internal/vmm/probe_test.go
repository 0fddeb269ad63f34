package vmm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestProbeNamePlatform(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts PlatformFacts
		want  string
		seen  []string
	}{
		{"pvm", PlatformFacts{KVM: true, CPUFlagsRead: true, PVMModule: true}, "pvm",
			[]string{"/dev/kvm works", "no vmx/svm CPU flag", "kvm_pvm module present"}},
		{"vmx", PlatformFacts{KVM: true, CPUFlagsRead: true, VMX: true}, "vmx", []string{"CPU flag vmx"}},
		{"svm", PlatformFacts{KVM: true, CPUFlagsRead: true, SVM: true}, "svm", []string{"CPU flag svm", "no kvm_pvm module"}},
		// The flag wins over the module: PVM only without vmx/svm.
		{"svm with kvm_pvm", PlatformFacts{KVM: true, CPUFlagsRead: true, SVM: true, PVMModule: true}, "svm", []string{"kvm_pvm module present"}},
		// Nothing is named without a working KVM device (the PVM guest
		// of 2026-12-04 had kvm_pvm built in and no /dev/kvm).
		{"pvm module, no kvm", PlatformFacts{CPUFlagsRead: true, PVMModule: true}, "unknown",
			[]string{"no usable /dev/kvm", "kvm_pvm module present"}},
		{"vmx, no kvm", PlatformFacts{CPUFlagsRead: true, VMX: true}, "unknown", []string{"no usable /dev/kvm", "CPU flag vmx"}},
		{"kvm, nothing else", PlatformFacts{KVM: true, CPUFlagsRead: true}, "unknown",
			[]string{"/dev/kvm works", "no vmx/svm CPU flag", "no kvm_pvm module"}},
		{"flags unreadable", PlatformFacts{KVM: true, PVMModule: true}, "unknown", []string{"CPU flags unreadable"}},
		{"both flags", PlatformFacts{KVM: true, CPUFlagsRead: true, VMX: true, SVM: true}, "unknown", []string{"vmx and svm"}},
	} {
		got, seen := NamePlatform(tc.facts)
		if got != tc.want {
			t.Errorf("%s: NamePlatform(%+v) = %q, want %q", tc.name, tc.facts, got, tc.want)
		}
		for _, s := range tc.seen {
			if !strings.Contains(seen, s) {
				t.Errorf("%s: seen %q lacks %q", tc.name, seen, s)
			}
		}
	}
}

func TestProbeCounterStatus(t *testing.T) {
	wrap := func(e unix.Errno) error { return fmt.Errorf("perf_event_open(type 4, config 0xd1): %w", e) }
	if got := CounterStatus(nil, "2"); got != "ok" {
		t.Errorf("nil error: %q", got)
	}
	for _, e := range []unix.Errno{unix.ENOENT, unix.EOPNOTSUPP, unix.ENODEV} {
		got := CounterStatus(wrap(e), "3")
		if !strings.HasPrefix(got, "no hardware PMU (") || !strings.Contains(got, e.Error()) {
			t.Errorf("%v: %q does not say no hardware PMU with the error", e, got)
		}
		if strings.Contains(got, "paranoid") {
			t.Errorf("%v: %q gives perf_event_paranoid advice for a missing PMU", e, got)
		}
	}
	for _, e := range []unix.Errno{unix.EACCES, unix.EPERM} {
		got := CounterStatus(wrap(e), "3")
		if strings.Contains(got, "no hardware PMU") {
			t.Errorf("%v: %q claims no PMU", e, got)
		}
		if !strings.Contains(got, "perf_event_paranoid is 3") || !strings.Contains(got, "sysctl kernel.perf_event_paranoid=2") {
			t.Errorf("%v, paranoid 3: %q lacks the sysctl advice", e, got)
		}
		// At 2 user-mode counters are allowed: the sysctl would not help.
		got = CounterStatus(wrap(e), "2")
		if strings.Contains(got, "sysctl") || !strings.Contains(got, "security policy") {
			t.Errorf("%v, paranoid 2: %q", e, got)
		}
		got = CounterStatus(wrap(e), "")
		if !strings.Contains(got, "perf_event_paranoid <= 2") {
			t.Errorf("%v, paranoid unreadable: %q", e, got)
		}
	}
	got := CounterStatus(wrap(unix.EINVAL), "3")
	if got != wrap(unix.EINVAL).Error() {
		t.Errorf("EINVAL: %q, want the bare error", got)
	}
}

func TestProbeKVMAdvice(t *testing.T) {
	enoent := &os.PathError{Op: "open", Path: "/dev/kvm", Err: unix.ENOENT}
	a := KVMAdvice(enoent, "/dev/kvm", PlatformFacts{CPUFlagsRead: true})
	for _, s := range []string{"has no KVM", "nested virtualization", "make test-hostvm", "`make test` and `make demo` fall back", "emulated AMD-SVM host"} {
		if !strings.Contains(a, s) {
			t.Errorf("ENOENT advice %q lacks %q", a, s)
		}
	}
	if strings.Contains(a, "modprobe") {
		t.Errorf("ENOENT advice without vmx/svm suggests modprobe: %q", a)
	}
	if a := KVMAdvice(enoent, "/dev/kvm", PlatformFacts{CPUFlagsRead: true, VMX: true}); !strings.Contains(a, "modprobe kvm_intel") {
		t.Errorf("ENOENT advice with vmx lacks modprobe: %q", a)
	}
	// A device that opens but cannot create a VM: its errno (ENOMEM
	// here) is not mistaken for a missing device or a permission error.
	cve := &createVMError{path: "/dev/kvm", err: unix.ENOMEM}
	if a := KVMAdvice(cve, "/dev/kvm", PlatformFacts{}); !strings.Contains(a, "could not create a VM") || !strings.Contains(a, "make test-hostvm") {
		t.Errorf("KVM_CREATE_VM failure advice %q", a)
	}
	if a := KVMAdvice(&createVMError{path: "/dev/kvm", err: unix.EPERM}, "/dev/kvm", PlatformFacts{}); strings.Contains(a, "kvm group") {
		t.Errorf("KVM_CREATE_VM EPERM advice %q gives the open-permission fix", a)
	}
	for _, e := range []unix.Errno{unix.EACCES, unix.EPERM} {
		a := KVMAdvice(&os.PathError{Op: "open", Path: "/dev/kvm", Err: e}, "/dev/kvm", PlatformFacts{})
		if !strings.Contains(a, "kvm group") || !strings.Contains(a, "root") {
			t.Errorf("%v advice %q lacks the permission fix", e, a)
		}
		if strings.Contains(a, "has no KVM") {
			t.Errorf("%v advice %q says there is no KVM", e, a)
		}
	}
}

// fakeHost writes a /proc/cpuinfo and /sys/module for ProbeHostAt.
func fakeHost(t *testing.T, flags string, pvm bool) ProbePaths {
	t.Helper()
	dir := t.TempDir()
	p := ProbePaths{
		KVM:       filepath.Join(dir, "kvm"),
		CPUInfo:   filepath.Join(dir, "cpuinfo"),
		SysModule: filepath.Join(dir, "module"),
		Paranoid:  filepath.Join(dir, "paranoid"),
	}
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: kvmsys.FPU vme " + flags + " sse2\n\n"
	if err := os.WriteFile(p.CPUInfo, []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.SysModule, "kvm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if pvm {
		if err := os.MkdirAll(filepath.Join(p.SysModule, "kvm_pvm"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p.Paranoid, []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkNoKVM checks a report of a host whose KVM device is unusable.
func checkNoKVM(t *testing.T, r *HostReport, errno string) {
	t.Helper()
	if r.KVMAvailable || r.Facts.KVM {
		t.Errorf("KVM available with an unusable device: %+v", r)
	}
	if r.KVMErrno != errno {
		t.Errorf("KVMErrno %q, want %q (error %q)", r.KVMErrno, errno, r.KVMError)
	}
	if r.Platform != "unknown" {
		t.Errorf("platform %q named without a KVM device", r.Platform)
	}
	if r.APIVersion != 0 || len(r.Capabilities) != 0 || r.InsnEmulation {
		t.Errorf("unmeasured KVM facts reported: api %d, %d capabilities, insn_emulation %v",
			r.APIVersion, len(r.Capabilities), r.InsnEmulation)
	}
	if len(r.Problems) == 0 || !strings.HasPrefix(r.Problems[0], "no usable ") {
		t.Errorf("problems %q do not say the KVM device is unusable", r.Problems)
	}
	if len(r.Counters) != 2 {
		t.Errorf("counters not measured: %v", r.Counters)
	}
}

func TestProbeHostMissingDevice(t *testing.T) {
	p := fakeHost(t, "svm", true)
	r := ProbeHostAt(p)
	checkNoKVM(t, r, "ENOENT")
	if !strings.Contains(r.KVMError, p.KVM) || !strings.Contains(r.KVMAdvice, "make test-hostvm") {
		t.Errorf("error %q / advice %q", r.KVMError, r.KVMAdvice)
	}
	if !r.Facts.SVM || r.Facts.VMX || !r.Facts.PVMModule {
		t.Errorf("facts %+v, want svm and kvm_pvm from the fake files", r.Facts)
	}
	if !strings.Contains(r.PlatformSeen, "no usable /dev/kvm") || !strings.Contains(r.PlatformSeen, "CPU flag svm") {
		t.Errorf("platform seen %q", r.PlatformSeen)
	}
}

func TestProbeHostNotAKVMDevice(t *testing.T) {
	p := fakeHost(t, "", true)
	if err := os.WriteFile(p.KVM, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	r := ProbeHostAt(p)
	checkNoKVM(t, r, "ENOTTY")
	if !strings.Contains(r.KVMAdvice, "not a KVM device") {
		t.Errorf("advice %q", r.KVMAdvice)
	}
}

func TestProbeHostRealKVM(t *testing.T) {
	p := DefaultProbePaths()
	fd, err := openKVMDevice(p.KVM)
	if err != nil {
		t.Skipf("no usable /dev/kvm here: %v", err)
	}
	unix.Close(fd)
	r := ProbeHostAt(p)
	if !r.KVMAvailable || r.KVMError != "" || r.APIVersion != 12 || len(r.Capabilities) != len(capabilities) {
		t.Fatalf("report of a working /dev/kvm: %+v", r)
	}
	want, _ := NamePlatform(measureCPU(p).withKVM())
	if r.Platform != want || ProbePlatform() != want {
		t.Errorf("platform %q, ProbePlatform %q, want %q", r.Platform, ProbePlatform(), want)
	}
}

func (f PlatformFacts) withKVM() PlatformFacts { f.KVM = true; return f }

// TestMeasureCPUVendor: the vendor, family and model that pick the guest
// branch event come from the first processor of /proc/cpuinfo.
func TestMeasureCPUVendor(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(dir, "cpuinfo")
	text := "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7713\nflags\t\t: fpu svm\n\n" +
		"processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nflags\t\t: fpu vmx\n"
	if err := os.WriteFile(info, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f := measureCPU(ProbePaths{CPUInfo: info, SysModule: dir})
	if f.Vendor != "AuthenticAMD" || f.Family != 25 || f.Model != 1 || !f.SVM || f.VMX {
		t.Errorf("measureCPU = %+v; want AuthenticAMD family 25 model 1, svm only (the first processor)", f)
	}
}
