package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// benchCheckpoint is the booted 2-vCPU checkpoint the gdb, trace and
// daemon benchmarks start from: -resume-checkpoint when given, else a
// fresh one booted into dir.
func benchCheckpoint(samsara, kernel, initrd, dir string, timeout time.Duration) string {
	if *resumeCheckpoint != "" {
		return *resumeCheckpoint
	}
	ckpt := filepath.Join(dir, "boot.ckpt")
	fmt.Fprintln(os.Stderr, "booting the reference guest on 2 vCPUs to a checkpoint...")
	if o, out := runCmd(timeout, samsara, "run", "--cpus", "2", "--kernel", kernel, "--initrd", initrd, "--save-checkpoint", ckpt, "--", "true"); !o.ok() {
		fail(fmt.Errorf("boot to a checkpoint: %s\n%s", o.Err, out))
	}
	return ckpt
}

// benchRecord records workload (a command line) on 2 vCPUs from ckpt
// into rec, or fails the benchmark.
func benchRecord(samsara, ckpt, rec, workload string, timeout time.Duration) {
	fmt.Fprintf(os.Stderr, "recording %s...\n", workload)
	args := append([]string{"record", "--cpus", "2", "--from-checkpoint", ckpt, "-o", rec, "--"}, strings.Fields(workload)...)
	if o, out := runCmd(timeout, samsara, args...); !o.ok() {
		fail(fmt.Errorf("record: %s\n%s", o.Err, out))
	}
}
