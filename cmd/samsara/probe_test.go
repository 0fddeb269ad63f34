package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

// missingKVM points probe at a KVM device that does not exist, with CPU
// flags and modules of a PVM guest without /dev/kvm (the machines of
// 2026-12-04: kvm_pvm built in, no vmx/svm).
func missingKVM(t *testing.T) vmm.ProbePaths {
	t.Helper()
	dir := t.TempDir()
	p := vmm.DefaultProbePaths()
	p.KVM = filepath.Join(dir, "kvm")
	p.CPUInfo = filepath.Join(dir, "cpuinfo")
	p.SysModule = filepath.Join(dir, "module")
	if err := os.WriteFile(p.CPUInfo, []byte("processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.SysModule, "kvm_pvm"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runProbeCmd runs `samsara probe args...` with probePaths = p.
func runProbeCmd(t *testing.T, p vmm.ProbePaths, args ...string) (string, error) {
	t.Helper()
	old := probePaths
	probePaths = p
	defer func() { probePaths = old }()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"probe"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestProbeNoKVMText(t *testing.T) {
	out, err := runProbeCmd(t, missingKVM(t))
	if err == nil {
		t.Fatalf("probe without /dev/kvm succeeded:\n%s", out)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		t.Fatalf("error %v would exit with status %d", err, ee.status)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "no usable /dev/kvm: open ") || !strings.Contains(lines[0], "no such file or directory") {
		t.Errorf("first line %q does not say /dev/kvm is missing", lines[0])
	}
	// Then what to do, before the report.
	advice := strings.Join(lines[1:4], "\n")
	if !strings.Contains(lines[1], "has no KVM") || !strings.Contains(advice, "make test-hostvm") || !strings.HasPrefix(lines[4], "KVM API version:  not read") {
		t.Errorf("lines 2-5 do not say what to do first:\n%s", out)
	}
	for _, bad := range []string{"KVM API version:  0", "PVM", "capabilities:\n", "statistic: no\n", "statistic: yes", "parallel cannot run; the serialized one can"} {
		if strings.Contains(out, bad) {
			t.Errorf("output contains %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "platform:         unknown (no usable /dev/kvm; no vmx/svm CPU flag; kvm_pvm module present)") {
		t.Errorf("platform line missing or wrong:\n%s", out)
	}
	trackers := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "  private-pagemap") || strings.HasPrefix(l, "  dirtylog") {
			trackers++
			if f := strings.Fields(l); len(f) < 2 || f[1] != "no" {
				t.Errorf("tracker line %q is not \"no\"", l)
			}
		}
	}
	if trackers == 0 {
		t.Errorf("no page tracker lines:\n%s", out)
	}
}

func TestProbeNoKVMJSON(t *testing.T) {
	out, err := runProbeCmd(t, missingKVM(t), "--json")
	if err == nil {
		t.Fatalf("probe --json without /dev/kvm succeeded")
	}
	var got struct {
		KVMAvailable   *bool  `json:"kvm_available"`
		KVMError       string `json:"kvm_error"`
		KVMErrno       string `json:"kvm_errno"`
		KVMAdvice      string `json:"kvm_advice"`
		APIVersion     *int   `json:"APIVersion"`
		Platform       string
		DefaultTracker string `json:"default_page_tracker"`
		Trackers       []struct {
			Name      string
			Supported bool
		} `json:"page_trackers"`
	}
	// The JSON is the whole of stdout; the error goes to stderr via main.
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if got.KVMAvailable == nil || *got.KVMAvailable {
		t.Errorf("kvm_available %v, want false", got.KVMAvailable)
	}
	if got.KVMErrno != "ENOENT" || !strings.Contains(got.KVMError, "no such file") || !strings.Contains(got.KVMAdvice, "make test-hostvm") {
		t.Errorf("kvm_errno %q, kvm_error %q, kvm_advice %q", got.KVMErrno, got.KVMError, got.KVMAdvice)
	}
	if got.APIVersion != nil || got.Platform != "unknown" || got.DefaultTracker != "" {
		t.Errorf("unmeasured facts: APIVersion %v, Platform %q, default tracker %q", got.APIVersion, got.Platform, got.DefaultTracker)
	}
	if len(got.Trackers) == 0 {
		t.Errorf("no page trackers listed")
	}
	for _, tr := range got.Trackers {
		if tr.Supported {
			t.Errorf("tracker %s supported without /dev/kvm", tr.Name)
		}
	}
}

// TestProbeNoKVMExitStatus runs samsara's main (in a child test process)
// on a host without /dev/kvm and checks that it exits non-zero, with the
// JSON on stdout and the reason on stderr.
func TestProbeNoKVMExitStatus(t *testing.T) {
	if dir := os.Getenv("SAMSARA_PROBE_TEST_NO_KVM"); dir != "" {
		probePaths.KVM = filepath.Join(dir, "kvm")
		os.Args = []string{"samsara", "probe", "--json"}
		main()
		os.Exit(0) // main returned: probe succeeded
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProbeNoKVMExitStatus$")
	cmd.Env = append(os.Environ(), "SAMSARA_PROBE_TEST_NO_KVM="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() == 0 {
		t.Fatalf("probe without /dev/kvm: %v, want a non-zero exit\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	if got["kvm_available"] != false {
		t.Errorf("kvm_available = %v", got["kvm_available"])
	}
	if !strings.Contains(stderr.String(), "this host cannot run samsara") || !strings.Contains(stderr.String(), "no usable ") {
		t.Errorf("stderr %q does not say why", stderr.String())
	}
}

func TestProbeRealHost(t *testing.T) {
	r := vmm.ProbeHost()
	if !r.KVMAvailable {
		t.Skipf("no usable /dev/kvm here: %s", r.KVMError)
	}
	out, err := runProbeCmd(t, vmm.DefaultProbePaths())
	if err != nil && len(r.Problems) == 0 {
		t.Fatalf("probe: %v", err)
	}
	if strings.Contains(out, "no usable /dev/kvm") || !strings.HasPrefix(out, "KVM API version:  12\n") {
		t.Errorf("probe on a working /dev/kvm:\n%s", out)
	}
	if strings.Contains(out, "perf_event_paranoid") {
		for n, s := range r.Counters {
			if strings.Contains(s, "no hardware PMU") {
				t.Errorf("counter %s: paranoid advice printed with no PMU:\n%s", n, out)
			}
		}
	}
}
