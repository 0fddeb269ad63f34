package suite

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeCpio writes a newc archive holding names (empty files) and returns
// its path: a stand-in for the initramfs.
func writeCpio(t *testing.T, names ...string) string {
	t.Helper()
	var b strings.Builder
	entry := func(name string, data string) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1, 0o100755, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for (b.Len())%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for (b.Len())%4 != 0 {
			b.WriteByte(0)
		}
	}
	for _, n := range names {
		entry(n, "#!x\n") // 4 bytes of data: the offsets must skip them
	}
	entry("TRAILER!!!", "")
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSuite(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGood(t *testing.T) {
	initrd := writeCpio(t, "init", "bin/blackscholes", "bin/true")
	p := writeSuite(t, `name: ci
defaults:
  vcpus: [2]
  replays: 2
  timeout: 90s
  thresholds: {record_run_ratio: 2}
workloads:
  - name: bs
    command: [blackscholes, "2", tiny]
    expect: 'blackscholes: .* ok'
  - name: t
    command: [/bin/true]
    vcpus: [1, 4]
    modes: [parallel]
    env: [A=1]
    cwd: /tmp
    thresholds: {log_rate: 3}
`)
	s, err := Load(p, initrd)
	if err != nil {
		t.Fatal(err)
	}
	bs, tr := s.Workloads[0], s.Workloads[1]
	if s.Name != "ci" || bs.Line != 8 || tr.Line != 11 {
		t.Fatalf("name %q, lines %d %d; want ci, 8, 11", s.Name, bs.Line, tr.Line)
	}
	if *bs.Replays != 2 || bs.Timeout.Seconds() != 90 || len(bs.Modes) != 2 || bs.VCPUs[0] != 2 {
		t.Fatalf("defaults not applied: %+v", bs.Settings)
	}
	if bs.Thresholds.RecordRunRatio != 2 || bs.Thresholds.LogRate != defaultThreshold || tr.Thresholds.LogRate != 3 {
		t.Fatalf("thresholds %+v %+v", bs.Thresholds, tr.Thresholds)
	}
	if len(tr.VCPUs) != 2 || tr.Modes[0] != "parallel" || tr.Cwd != "/tmp" {
		t.Fatalf("workload settings lost: %+v", tr.Settings)
	}
}

// TestLoadBad: each mistake is reported as FILE:LINE: key: what, before
// anything runs.
func TestLoadBad(t *testing.T) {
	initrd := writeCpio(t, "bin/blackscholes")
	head := "workloads:\n  - name: bs\n    command: [blackscholes]\n"
	for _, tc := range []struct {
		name, text string
		want       string // after "FILE:"
	}{
		{"unknown top key", "nmae: x\n" + head, `1: nmae: unknown key`},
		{"unknown workload key", head + "    vcpu: [2]\n", `4: workloads[0].vcpu: unknown key (known: append, command, cwd,`},
		{"unknown threshold", head + "    thresholds: {record_ratio: 2}\n", `4: workloads[0].thresholds.record_ratio: unknown key`},
		{"threshold not a number", head + "    thresholds:\n      log_rate: fast\n", `5: workloads[0].thresholds.log_rate: "fast" is not a number`},
		{"defaults threshold not a number", "defaults:\n  thresholds: {record_run_ratio: 1.5x}\n" + head, `2: defaults.thresholds.record_run_ratio: "1.5x" is not a number`},
		{"vcpus not integers", head + "    vcpus: [two]\n", `4: workloads[0].vcpus[0]: "two" is not an integer`},
		{"vcpus not a list", head + "    vcpus: 2\n", `4: workloads[0].vcpus: want a list`},
		{"missing image", head + "    image: nosuch.img\n", `2: workloads[0].image: stat `},
		{"command not in initramfs", "workloads:\n  - name: x\n    command: [nosuch]\n", `2: workloads[0].command: "nosuch" is neither in the initramfs's /bin nor on the image`},
		{"mnt without image", "workloads:\n  - name: x\n    command: [/mnt/prog]\n", `2: workloads[0].command: "/mnt/prog" is on /mnt, but the workload has no image`},
		{"bad mode", head + "    modes: [fast]\n", `2: workloads[0].modes: "fast": want serialized or parallel`},
		{"bad vcpus", head + "    vcpus: [9]\n", `2: workloads[0].vcpus: 9: must be between 1 and 8`},
		{"bad regexp", head + "    expect: 'a('\n", `2: workloads[0].expect: not a regexp`},
		{"bad timeout", head + "    timeout: soon\n", `4: workloads[0].timeout: "soon" is not a duration`},
		{"duplicate name", head + head[len("workloads:\n"):], `4: workloads[1].name: "bs" is also the name of the workload on line 2`},
		{"no command", "workloads:\n  - name: x\n", `2: workloads[0].command: missing`},
		{"no workloads", "name: x\n", `workloads: the suite lists no workloads`},
		{"threshold below 1", head + "    thresholds: {log_rate: 0.5}\n", `2: workloads[0].thresholds: factors below 1`},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			p := writeSuite(t, tc.text)
			_, err := Load(p, initrd)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.text)
			}
			if !strings.Contains(err.Error(), p+":") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\nwant it to name %s and contain %q", err, p, tc.want)
			}
		})
	}
}

// TestLoadCommandOnImage checks a /mnt command against an ext2 image made
// by guest-images/build-disk.sh (needs mke2fs and debugfs: e2fsprogs).
func TestLoadCommandOnImage(t *testing.T) {
	content := t.TempDir()
	if err := os.WriteFile(filepath.Join(content, "prog"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if out, err := runScript("../../guest-images/build-disk.sh", img, content); err != nil {
		t.Skipf("needs e2fsprogs to build a disk image: %v\n%s", err, out)
	}
	if _, ok := imageHas(img, "/prog"); !ok {
		t.Skip("needs debugfs (e2fsprogs) to look into the image")
	}
	initrd := writeCpio(t, "bin/true")
	good := writeSuite(t, "workloads:\n  - name: p\n    image: "+img+"\n    command: [/mnt/prog]\n  - name: q\n    image: "+img+"\n    command: [prog]\n")
	if _, err := Load(good, initrd); err != nil {
		t.Fatalf("a program on the image: %v", err)
	}
	bad := writeSuite(t, "workloads:\n  - name: p\n    image: "+img+"\n    command: [/mnt/other]\n")
	if _, err := Load(bad, initrd); err == nil || !strings.Contains(err.Error(), `2: workloads[0].command: "/mnt/other" is not on the image`) {
		t.Fatalf("a program not on the image: %v", err)
	}
}

// TestShippedSuites loads the project's suite files against a stand-in
// initramfs with the workloads.
func TestShippedSuites(t *testing.T) {
	initrd := writeCpio(t, "bin/blackscholes", "bin/swaptions", "bin/streamcluster", "bin/canneal",
		"bin/fluidanimate", "bin/dedup", "bin/raytrace", "bin/cvping", "bin/mutexc", "bin/pipepp", "bin/pipeline", "bin/forkexec")
	for _, f := range []string{"short.yaml", "full.yaml", "large.yaml"} {
		if _, err := Load(filepath.Join("../../suites", f), initrd); err != nil {
			t.Errorf("suites/%s: %v", f, err)
		}
	}
}

func runScript(args ...string) ([]byte, error) {
	return exec.Command(args[0], args[1:]...).CombinedOutput()
}
