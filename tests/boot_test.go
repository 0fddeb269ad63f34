package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// resumeTimeout bounds a run that starts from a booted checkpoint: the
// point of checkpoints is that this takes seconds, not minutes.
const resumeTimeout = 3 * time.Minute

// TestBootColdAndResume boots the reference guest cold on 1 and 2 vCPUs
// (saving a checkpoint when init starts), runs a two-thread program, and
// checks that resuming the checkpoint gives the same program output.
func TestBootColdAndResume(t *testing.T) {
	for _, cpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dcpu", cpus), func(t *testing.T) {
			ckpt := bootedCheckpoint(t, cpus)
			r := samsara(t, resumeTimeout, "run", "--cpus", fmt.Sprint(cpus), "--from-checkpoint", ckpt, "--", "threads2", "100000")
			if r.status != 0 {
				t.Fatalf("resumed run exited %d\nstdout:\n%s\nstderr:\n%s", r.status, tail(r.stdout), tail(r.stderr))
			}
			want := "threads2: counter=200000 ok"
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("resumed output lacks %q:\n%s", want, tail(r.stdout))
			}
			v, _ := checkpoints.Load(cpus)
			if cold := v.(*ckptEntry).coldOut; cold != "" && !strings.Contains(cold, want) {
				t.Fatalf("cold boot output lacks %q:\n%s", want, tail(cold))
			}
			t.Logf("resume + program: %v", r.elapsed)
		})
	}
}

// TestNproc checks the guest sees the vCPUs it was given.
func TestNproc(t *testing.T) {
	for _, cpus := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%dcpu", cpus), func(t *testing.T) {
			ckpt := bootedCheckpoint(t, cpus)
			r := samsara(t, resumeTimeout, "run", "--cpus", fmt.Sprint(cpus), "--from-checkpoint", ckpt, "--", "nproc")
			if r.status != 0 || strings.TrimSpace(lastLine(r.stdout)) != fmt.Sprint(cpus) {
				t.Fatalf("nproc on %d vCPUs: status %d, output:\n%s\nstderr:\n%s", cpus, r.status, tail(r.stdout), tail(r.stderr))
			}
		})
	}
}

// TestExitStatus checks that the guest program's exit status becomes
// samsara's.
func TestExitStatus(t *testing.T) {
	ckpt := bootedCheckpoint(t, 1)
	for prog, want := range map[string]int{"true": 0, "false": 1} {
		r := samsara(t, resumeTimeout, "run", "--cpus", "1", "--from-checkpoint", ckpt, "--", prog)
		if r.status != want {
			t.Errorf("%s: exit status %d, want %d\nstderr:\n%s", prog, r.status, want, tail(r.stderr))
		}
	}
	r := samsara(t, resumeTimeout, "run", "--cpus", "1", "--from-checkpoint", ckpt, "--", "no-such-program")
	if r.status != 127 {
		t.Errorf("missing program: exit status %d, want 127\nstdout:\n%s", r.status, tail(r.stdout))
	}
}

// TestBadInput checks that bad input gets a clear error and a non-zero
// exit before any guest runs.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "bzImage")
	os.WriteFile(notELF, []byte("MZ this is not an ELF kernel"), 0o644)
	kernel, initrd := filepath.Join(buildDir, "vmlinux"), filepath.Join(buildDir, "initramfs.cpio")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing kernel", []string{"run", "--kernel", filepath.Join(dir, "nope")}, "no such file"},
		{"not an ELF kernel", []string{"run", "--kernel", notELF, "--initrd", initrd}, "not an x86-64 ELF vmlinux"},
		{"missing disk", []string{"run", "--kernel", kernel, "--initrd", initrd, "--vm", filepath.Join(dir, "disk.img")}, "--vm"},
		{"zero cpus", []string{"run", "--cpus", "0", "--kernel", kernel, "--initrd", initrd}, "--cpus 0"},
		{"too many cpus", []string{"run", "--cpus", "9", "--kernel", kernel, "--initrd", initrd}, "--cpus 9"},
		{"memory too small", []string{"run", "--mem", "8M", "--kernel", kernel, "--initrd", initrd}, "too small"},
		{"memory not a size", []string{"run", "--mem", "lots", "--kernel", kernel, "--initrd", initrd}, "not a size"},
		{"unknown flag", []string{"run", "--frobnicate"}, "unknown flag"},
		{"bad checkpoint", []string{"run", "--from-checkpoint", notELF, "--kernel", kernel, "--initrd", initrd}, "not a samsara checkpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "not an ELF kernel" || c.name == "memory too small" || c.name == "bad checkpoint" {
				requireKVM(t)
			}
			r := samsara(t, 30*time.Second, c.args...)
			if r.status == 0 {
				t.Fatalf("exit status 0 for bad input; stderr:\n%s", r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr does not say %q:\n%s", c.want, r.stderr)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestCPUIDHidden: the guest's CPUID instruction does not report the
// features that would make a recording non-deterministic (TSC, RDTSCP,
// RDRAND, RDSEED) where samsara's KVM_SET_CPUID2 policy is honoured:
// hardware virtualization (issue 11 item 3; run in the emulated SVM host).
// Under PVM the guest reads the host's leaves 1 and 7 whatever samsara
// sets (README, "Determinism contract"), so there the test only checks
// that the kernel itself was told (clearcpuid= on its command line).
func TestCPUIDHidden(t *testing.T) {
	ckpt := bootedCheckpoint(t, 1)
	r := samsara(t, resumeTimeout, "run", "--cpus", "1", "--from-checkpoint", ckpt, "--", "cpuidbits")
	line := lastLine(r.stdout)
	if r.status != 0 || !strings.HasPrefix(line, "cpuidbits: ") {
		t.Fatalf("cpuidbits: status %d\nstdout:\n%s\nstderr:\n%s", r.status, tail(r.stdout), tail(r.stderr))
	}
	p := samsara(t, resumeTimeout, "probe", "--json")
	var probe struct{ Platform string }
	if err := json.Unmarshal([]byte(p.stdout), &probe); err != nil {
		t.Fatalf("probe --json: %v\n%s", err, p.stdout)
	}
	if probe.Platform == "pvm" {
		c := samsara(t, resumeTimeout, "cmdline")
		for _, bit := range []string{"4", "59", "158", "306"} { // tsc, rdtscp, rdrand, rdseed (Linux feature numbers)
			if !regexp.MustCompile(`clearcpuid=(\d+,)*` + bit + `(,|\s|$)`).MatchString(c.stdout) {
				t.Errorf("PVM: the kernel command line does not clear feature %s: %s", bit, c.stdout)
			}
		}
		t.Logf("PVM: the guest's CPUID shows the host's bits (%s); the kernel is told with clearcpuid=", line)
		return
	}
	if want := "cpuidbits: tsc=0 rdtscp=0 rdrand=0 rdseed=0"; strings.TrimSpace(line) != want {
		t.Fatalf("on %s the guest's CPUID reports %q, want %q", probe.Platform, line, want)
	}
}
