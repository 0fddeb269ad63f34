package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/samsara-vmm/samsara/internal/session"
)

// The report subcommand: one run measures samsara and QEMU on every
// workload and writes results/bench.md (tables) and results/overhead.svg
// (recording overhead chart). The measuring lives in samsara.go and
// qemu.go, the rendering in markdown.go and svg.go; this file holds the
// measured data and ties them together.

// reportWorkloads are the PARSEC-style programs in build/workloads (see
// guest-images/workloads/README.md), each run as "PROG THREADS tiny" with
// THREADS equal to the vCPU count.
var reportWorkloads = []string{"blackscholes", "swaptions", "streamcluster", "canneal", "fluidanimate", "dedup", "raytrace"}

// workloadSize is the input size of every run: "tiny" keeps the whole
// report within minutes on this project's 2-core PVM machines.
const workloadSize = "tiny"

// userHeavyWorkloads run with the "small" input on 2 vCPUs in a section of
// their own (PLATFORM.md: report kernel-heavy and user-heavy workloads
// separately): the tiny runs spend most of their time in the emulated
// guest kernel, these mostly in guest user code.
var userHeavyWorkloads = []string{"blackscholes", "swaptions"}

// syncHeavyWorkloads are issue 18's sync-heavy programs, measured tiny on
// 2 vCPUs with the thread count given (cvping: 8 threads, as the issue
// asks); guest-images/workloads/README.md says what each does.
var syncHeavyWorkloads = []struct {
	name    string
	threads int
}{{"cvping", 8}, {"mutexc", 2}, {"pipepp", 2}, {"pipeline", 2}, {"forkexec", 2}}

// userHeavySize is their input size.
const userHeavySize = "small"

// outcome is one measured command.
type outcome struct {
	// Wall is the command's wall time, measured even when it failed.
	Wall time.Duration
	// Err says why the command did not do what it should ("" when it did);
	// it is shown in the table instead of the time.
	Err string
	// Ran is false when the measurement was not attempted.
	Ran bool
	// MaxRSSKiB is the process's peak resident set (getrusage ru_maxrss):
	// guest RAM the guest touched (a shared memfd mapping) plus the
	// VMM's own memory, and for the parallel recorder the views' private
	// pages.
	MaxRSSKiB int64 `json:",omitempty"`
}

// ok reports whether the command ran and succeeded.
func (o outcome) ok() bool { return o.Ran && o.Err == "" }

// samsaraResult is one workload on one vCPU count under samsara, every
// command started from the same booted checkpoint.
type samsaraResult struct {
	// VCPUs is the vCPU count (and the workload's thread count).
	VCPUs int
	// Run is `samsara run` (no recording).
	Run outcome
	// Record is `samsara record --mode serialized`.
	Record outcome
	// Replay is `samsara replay` of Record's log; ok only if samsara
	// reported that the replay matched the recording.
	Replay outcome
	// LogBytes is the size of the recording file.
	LogBytes int64
	// GuestNanos is the guest time the recording covers (inspect --json).
	GuestNanos uint64
	// Parallel is `samsara record --mode parallel`, when the binary has
	// that mode (Ran is false otherwise).
	Parallel outcome
	// ParallelReplay is the replay of Parallel's log.
	ParallelReplay outcome
	// Squashes and Chunks are summed over the vCPUs of Parallel's log.
	Squashes, Chunks int
	// Baseline is Parallel with the privilege-change chunk ends and the
	// early conflict checks turned off (record --privilege-ends=false
	// --early-conflicts=false): the parallel recorder as it was before them.
	// Measured for the user-heavy runs only.
	Baseline outcome
	// BaselineSquashes and BaselineChunks are Baseline's counts.
	BaselineSquashes, BaselineChunks int
	// RecordProfile and ParallelProfile are the two recordings' record
	// --profile-json (issue 18): where each vCPU's wall time went.
	RecordProfile, ParallelProfile *recordProfile `json:",omitempty"`
}

// recordProfile is record --profile-json's content (internal/session,
// Profile.MarshalJSON): seconds per phase and vCPU.
type recordProfile struct {
	Wall  float64              `json:"wall_seconds"`
	VCPUs []map[string]float64 `json:"vcpus"`
}

// phases are the profile's columns, in the order record --profile prints.
var phases = session.ProfileColumns()

// share is phase's mean share of the wall time over the vCPUs, in %.
func (p *recordProfile) share(phase string) float64 {
	if p == nil || p.Wall <= 0 || len(p.VCPUs) == 0 {
		return 0
	}
	sum := 0.0
	for _, v := range p.VCPUs {
		sum += v[phase]
	}
	return 100 * sum / float64(len(p.VCPUs)) / p.Wall
}

// qemuResult is one workload under QEMU, each run a cold start (SeaBIOS,
// kernel boot, workload, reset).
type qemuResult struct {
	// Plain1 and Plain2 are -accel tcg without recording, 1 and 2 vCPUs.
	Plain1, Plain2 outcome
	// Record1 and Replay1 are -icount shift=auto,rr=record/replay, 1 vCPU.
	Record1, Replay1 outcome
	// LogBytes is the size of Record1's rrfile.
	LogBytes int64
	// GuestNanos is the last kernel log timestamp of Record1 (the guest
	// clock at reset, boot included; virtual time under -icount).
	GuestNanos uint64
	// Record2 is the same recording with -smp 2, which QEMU 7.2 refuses.
	Record2 outcome
}

// workloadResult is everything measured for one workload.
type workloadResult struct {
	// Name is the program in build/workloads.
	Name string
	// Samsara holds one result per vCPU count, in the order measured.
	Samsara []samsaraResult
	// QEMU is the QEMU side.
	QEMU qemuResult
}

// kvmResult is one attempt to run a workload under qemu -enable-kvm.
type kvmResult struct {
	// VCPUs is -smp.
	VCPUs int
	// Workload is the command line given to init.
	Workload string
	// Outcome is the attempt; under PVM its Err is the emulation failure.
	Outcome outcome
}

// benchReport is one run of the report subcommand.
type benchReport struct {
	// Date is when the run started.
	Date time.Time
	// Host describes the machine (CPUs, KVM platform).
	Host string
	// QEMUVersion is the first line of qemu-system-x86_64 --version.
	QEMUVersion string
	// Cmdline is the kernel command line both VMMs give the guest.
	Cmdline string
	// Parallel says whether samsara record has a parallel mode.
	Parallel bool
	// Workloads are the per-workload results, in reportWorkloads order.
	Workloads []workloadResult
	// QEMUBoot is QEMU running "true" instead of a workload: the cost of
	// the boot that every QEMU time includes.
	QEMUBoot qemuResult
	// UserHeavy are the user-heavy runs (userHeavyWorkloads), one result
	// per vCPU count of two or more.
	UserHeavy []workloadResult
	// SyncHeavy are the sync-heavy runs (syncHeavyWorkloads), one result
	// per vCPU count of two or more.
	SyncHeavy []workloadResult `json:",omitempty"`
	// KVM are the qemu -enable-kvm attempts, one per vCPU count.
	KVM []kvmResult
	// Native is the host's own parallelism (issue 18): a workload's
	// threads natively, 1 against 2.
	Native *nativeSpeedup `json:",omitempty"`
	// Trackers is the output of the page trackers' cost benchmark
	// (internal/ept BenchmarkChunk), one line per backend and size.
	Trackers []string
	// Elapsed is how long the whole measurement took.
	Elapsed time.Duration
}

// reportConfig is what the report subcommand was asked to do.
type reportConfig struct {
	samsara, kernel, initrd string
	// results is the output directory.
	results string
	// workloads and cpus select what to measure.
	workloads []string
	cpus      []int
	// kvm enables the qemu -enable-kvm attempts (about a minute each here).
	kvm bool
	// timeout bounds every single command.
	timeout time.Duration
}

// multiCPUs are the vCPU counts of two or more, where the parallel
// recorder has something to run in parallel.
func multiCPUs(cpus []int) []int {
	var m []int
	for _, n := range cpus {
		if n >= 2 {
			m = append(m, n)
		}
	}
	return m
}

// benchReportCmd measures everything and writes the two files.
func benchReportCmd(cfg reportConfig) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "samsara-report-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	cmdline, err := exec.Command(cfg.samsara, "cmdline").Output()
	if err != nil {
		fail(fmt.Errorf("samsara cmdline: %v", err))
	}
	r := &benchReport{
		Date:        start,
		Host:        hostDescription(),
		QEMUVersion: qemuVersion(),
		Cmdline:     strings.TrimSpace(string(cmdline)),
		Parallel:    hasParallelMode(cfg.samsara),
	}
	q := qemuRunner{kernel: cfg.kernel, initrd: cfg.initrd, cmdline: r.Cmdline, dir: dir, timeout: cfg.timeout}
	s := samsaraRunner{bin: cfg.samsara, kernel: cfg.kernel, initrd: cfg.initrd, dir: dir, timeout: cfg.timeout, parallel: r.Parallel}

	progress("native: 1 and 2 threads of " + nativeWorkload + " " + userHeavySize + " on the host")
	r.Native = measureNative(filepath.Join(filepath.Dir(cfg.kernel), "workloads", nativeWorkload), cfg.timeout)
	progress("QEMU boot only (true)")
	r.QEMUBoot = q.workload("true", false)
	ckpts := map[int]string{}
	for _, n := range cfg.cpus {
		progress(fmt.Sprintf("samsara: boot %d vCPU(s) to a checkpoint", n))
		ck, err := s.checkpoint(n)
		if err != nil {
			fail(err)
		}
		ckpts[n] = ck
	}
	for _, w := range cfg.workloads {
		wr := workloadResult{Name: w}
		for _, n := range cfg.cpus {
			progress(fmt.Sprintf("samsara: %s on %d vCPU(s)", w, n))
			wr.Samsara = append(wr.Samsara, s.workload(ckpts[n], w, n))
		}
		progress("QEMU: " + w)
		wr.QEMU = q.workload(w, true)
		r.Workloads = append(r.Workloads, wr)
	}
	// The user-heavy and sync-heavy sets compare the two recorders: on
	// every vCPU count of two or more (issue 18: 4 wherever 2).
	multi := multiCPUs(cfg.cpus)
	if r.Parallel {
		for _, w := range userHeavyWorkloads {
			wr := workloadResult{Name: w}
			for _, n := range multi {
				progress(fmt.Sprintf("samsara: %s %d %s on %d vCPUs (user-heavy)", w, n, userHeavySize, n))
				wr.Samsara = append(wr.Samsara, s.userHeavy(ckpts[n], w, n))
			}
			if len(wr.Samsara) > 0 {
				r.UserHeavy = append(r.UserHeavy, wr)
			}
		}
		for _, w := range syncHeavyWorkloads {
			wr := workloadResult{Name: fmt.Sprintf("%s %d", w.name, w.threads)}
			for _, n := range multi {
				progress(fmt.Sprintf("samsara: %s %d %s on %d vCPUs (sync-heavy)", w.name, w.threads, workloadSize, n))
				wr.Samsara = append(wr.Samsara, s.measureArgv(ckpts[n], n, []string{w.name, fmt.Sprint(w.threads), workloadSize}))
			}
			if len(wr.Samsara) > 0 {
				r.SyncHeavy = append(r.SyncHeavy, wr)
			}
		}
	}
	if cfg.kvm && len(cfg.workloads) > 0 {
		for _, n := range cfg.cpus {
			progress(fmt.Sprintf("QEMU -enable-kvm, %d vCPU(s)", n))
			r.KVM = append(r.KVM, q.kvm(cfg.workloads[0], n))
		}
	}
	progress("page trackers: cost per chunk (go test -bench BenchmarkChunk ./internal/ept/)")
	r.Trackers = trackerBench(cfg.timeout)
	r.Elapsed = time.Since(start)

	if err := writeReport(cfg.results, r); err != nil {
		fail(err)
	}
	fmt.Print(renderMarkdown(r))
}

// writeReport writes bench.md, overhead.svg and the measured data,
// bench.json (what -rerender reads), into dir.
func writeReport(dir string, r *benchReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(renderMarkdown(r)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "overhead.svg"), []byte(renderSVG(overheadChart(r))), 0o644)
}

// rerender rewrites bench.md and overhead.svg in dir from its bench.json,
// without measuring (after a change to the rendering).
func rerender(dir string) error {
	j, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		return err
	}
	var r benchReport
	if err := json.Unmarshal(j, &r); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "bench.json"), err)
	}
	return writeReport(dir, &r)
}

// progress tells the user on stderr what is being measured.
func progress(what string) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), what)
}

// hostDescription names the CPU count and how KVM is provided.
func hostDescription() string {
	kvm := "hardware KVM"
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		kvm = "KVM through PVM (kvm_pvm: no VMX/SVM, guest kernel code emulated)"
	}
	return fmt.Sprintf("%d CPUs, %s", runtime.NumCPU(), kvm)
}

// qemuVersion is the first line of qemu-system-x86_64 --version.
func qemuVersion() string {
	out, err := exec.Command(qemuBin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
}

// trackerBench runs internal/ept's cost benchmark (each backend: a guest
// touching 10, 100 and 1000 pages in a chunk; the run, harvest and
// commit/discard costs) and returns its result lines.
func trackerBench(timeout time.Duration) []string {
	// 20 iterations: the 1000-page case takes ~10 ms each.
	cmd := exec.Command("go", "test", "-run", "XXX", "-bench", "BenchmarkChunk", "-benchtime", "20x", "./internal/ept/")
	out, err := runWithTimeout(cmd, timeout)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	if err != nil {
		lines = append(lines, "failed: "+err.Error())
	}
	return lines
}

// runWithTimeout runs cmd and returns its combined output.
func runWithTimeout(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	done := make(chan error, 1)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("timed out after %v", timeout)
	}
}
