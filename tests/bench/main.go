// Command bench compares samsara with QEMU in one run and prints a
// markdown table.
//
//	go run ./tests/bench boot     boot-to-init wall time, 1 and 2 vCPUs,
//	                              samsara vs qemu-system-x86_64 -enable-kvm
//	go run ./tests/bench rr       per workload on 2 vCPUs, from a booted
//	                              checkpoint: run, record and replay time,
//	                              log size and log rate
//	go run ./tests/bench gdb      replay --gdb: going back 1 s and 10 s
//	                              of guest time, reverse-continue, and
//	                              the debugger's checkpoint files (gdb.go)
//	go run ./tests/bench trace    samsara trace: expansion speed and bytes
//	                              per instruction per format next to the
//	                              recording's log rate (trace.go)
//	go run ./tests/bench report   per workload on 1 and 2 vCPUs: samsara
//	                              run/record/replay next to QEMU TCG
//	                              record/replay (-icount rr) and plain
//	                              TCG and -enable-kvm runs; writes
//	                              results/bench.md and results/overhead.svg
//	                              (-results DIR to change; report.go)
//
// Both boot the same reference kernel and initramfs with the same kernel
// command line (plus loglevel=7); "boot-to-init" is the wall time from
// starting the VMM to the kernel's "Run /init as init process" line, so
// both are measured the same way. (QEMU cannot go further here: the first
// exec executes fwait, which KVM's emulator rejects under PVM and QEMU has
// no fallback for; samsara skips it.) QEMU runs with -cpu
// qemu64,+xsaveerptr: -cpu host fails on MSR 0x10a under PVM, and without
// XSAVEERPTR Linux patches in x87 code the emulator rejects.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// buildDirFlag is the directory with vmlinux, initramfs.cpio and
// System.map.
var buildDirFlag = flag.String("build", envOr("SAMSARA_BUILD", "build"), "directory with vmlinux and initramfs.cpio")

// initMarker is the kernel's line just before it executes /init.
const initMarker = "Run /init as init process"

func main() {
	build := buildDirFlag
	samsara := flag.String("samsara", "bin/samsara", "samsara binary")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up on one boot (report: one command) after this long")
	results := flag.String("results", "results", "report: directory for bench.md and overhead.svg")
	workloads := flag.String("workloads", strings.Join(reportWorkloads, ","), "report: comma-separated workloads from build/workloads")
	cpuList := flag.String("cpus", "1,2,4", "report: comma-separated vCPU counts for samsara (issue 18: 4 wherever 2; the recorder comparisons run on each count of 2 or more)")
	kvm := flag.Bool("kvm", true, "report: also try qemu -enable-kvm (about a minute per vCPU count here)")
	rerenderOnly := flag.Bool("rerender", false, "report: measure nothing; rewrite bench.md and overhead.svg from the results directory's bench.json")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "boot" && flag.Arg(0) != "rr" && flag.Arg(0) != "report" && flag.Arg(0) != "resume" && flag.Arg(0) != "daemon" && flag.Arg(0) != "gdb" && flag.Arg(0) != "trace") {
		fmt.Fprintln(os.Stderr, "usage: bench [flags] boot|rr|report|resume|daemon|gdb|trace")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if flag.Arg(0) == "report" && *rerenderOnly {
		if err := rerender(*results); err != nil {
			fail(err)
		}
		return
	}
	kernel := filepath.Join(*build, "vmlinux")
	initrd := filepath.Join(*build, "initramfs.cpio")
	for _, p := range []string{kernel, initrd, *samsara} {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v (run make first)\n", err)
			os.Exit(2)
		}
	}
	if flag.Arg(0) == "resume" {
		benchResume(*samsara, kernel, initrd, *timeout) // resume.go
		return
	}
	if flag.Arg(0) == "gdb" {
		benchGDB(*samsara, kernel, initrd, *timeout) // gdb.go
		return
	}
	if flag.Arg(0) == "trace" {
		benchTrace(*samsara, kernel, initrd, *timeout) // trace.go
		return
	}
	if flag.Arg(0) == "daemon" {
		benchDaemon(*samsara, kernel, initrd, *timeout) // daemon.go
		return
	}
	if flag.Arg(0) == "rr" {
		benchRR(*samsara, kernel, initrd)
		return
	}
	if flag.Arg(0) == "report" {
		cfg := reportConfig{samsara: *samsara, kernel: kernel, initrd: initrd, results: *results,
			workloads: splitList(*workloads), kvm: *kvm, timeout: *timeout}
		for _, c := range splitList(*cpuList) {
			n, err := strconv.Atoi(c)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: bad -cpus entry %q\n", c)
				os.Exit(2)
			}
			cfg.cpus = append(cfg.cpus, n)
		}
		benchReportCmd(cfg)
		return
	}
	cmdline, err := exec.Command(*samsara, "cmdline").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: samsara cmdline: %v\n", err)
		os.Exit(2)
	}
	fmt.Println("| vCPUs | samsara run | qemu -enable-kvm | ratio |")
	fmt.Println("|---|---|---|---|")
	for _, cpus := range []int{1, 2} {
		s := timeToMarker(*timeout, *samsara, "run", "--cpus", fmt.Sprint(cpus), "--kernel", kernel, "--initrd", initrd, "--append", "loglevel=7")
		q := timeToMarker(*timeout, "qemu-system-x86_64", "-enable-kvm", "-cpu", "qemu64,+xsaveerptr", "-smp", fmt.Sprint(cpus), "-m", "256",
			"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", strings.TrimSpace(string(cmdline))+" loglevel=7")
		ratio := "-"
		if s.err == nil && q.err == nil {
			ratio = fmt.Sprintf("%.2fx", q.d.Seconds()/s.d.Seconds())
		}
		fmt.Printf("| %d | %s | %s | %s |\n", cpus, s, q, ratio)
	}
}

// timing is one measured boot.
type timing struct {
	d   time.Duration
	err error
}

func (t timing) String() string {
	if t.err != nil {
		return "failed: " + t.err.Error()
	}
	return fmt.Sprintf("%.1f s", t.d.Seconds())
}

// timeToMarker starts the command and returns the time until initMarker
// appears on its stdout; the process is killed then.
func timeToMarker(timeout time.Duration, name string, args ...string) timing {
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return timing{err: err}
	}
	cmd.Stderr = io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return timing{err: err}
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	found := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), initMarker) {
				found <- time.Since(start)
				return
			}
		}
		close(found)
	}()
	select {
	case d, ok := <-found:
		if !ok {
			return timing{err: fmt.Errorf("exited without reaching init")}
		}
		return timing{d: d}
	case <-time.After(timeout):
		return timing{err: fmt.Errorf("no init after %v", timeout)}
	}
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
