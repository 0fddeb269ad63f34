package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSuiteRunBadFile: a bad suite file stops `samsara suite run` before
// anything runs, with FILE:LINE: key in the error, and writes nothing.
func TestSuiteRunBadFile(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs.cpio"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	text := "workloads:\n  - name: x\n    command: [true]\n    thresholds:\n      log_rate: lots\n"
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	root := newRootCmd()
	root.SetArgs([]string{"suite", "run", bad, "-o", out, "--kernel", filepath.Join(dir, "vmlinux"),
		"--initrd", filepath.Join(dir, "initramfs.cpio")})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), bad+`:5: workloads[0].thresholds.log_rate: "lots" is not a number`) {
		t.Fatalf("error %v, want one naming %s:5 and the key", err, bad)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the output folder was made for a suite that did not run")
	}
}
