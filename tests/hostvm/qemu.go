package main

// Booting the host VM: QEMU's TCG emulating an AMD CPU with SVM and nested
// paging (-cpu max), Debian's cloud kernel, the initramfs of initramfs.go.
// The console is streamed line by line; the host's init prints markers
// (initramfs.go) that give the time /dev/kvm became ready and the inner
// command's exit status. No NIC is configured (-nic none), so nothing
// inside reaches the network.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// qemuBinary is Debian's qemu-system-x86 (7.2 measured here).
const qemuBinary = "qemu-system-x86_64"

// bootConfig is one host VM run.
type bootConfig struct {
	Kernel    hostKernel
	Initramfs string
	// MemMiB is the host's RAM. It holds the initramfs (samsara, the
	// reference guest, test binaries) and a tmpfs for checkpoints and
	// recordings, besides the guests' own RAM (256 MiB each by default).
	MemMiB int
	// CPUs of the host; 2 matches the machines here (2 cores) and lets
	// the 2-vCPU guests run their vCPUs in parallel.
	CPUs int
	// Timeout bounds the whole run, boot included.
	Timeout time.Duration
	// Silence bounds the time without a console line (0: no bound). The
	// tests print at least every 3 minutes (their per-command bound), so a
	// longer silence is a wedged host: seen once in ~6 smoke runs, with
	// QEMU at 190% CPU and a test's own 3-minute bound never firing.
	Silence time.Duration
	// Stuck bounds the time without a test starting or ending
	// (isTestProgress; 0: no bound): a host whose console goes on
	// printing (kernel warnings, a test's log in a loop) while no test
	// starts or ends is wedged too. CI's run of 2026-12-06 lost its whole
	// 40-minute bound that way after the smoke set's first package.
	Stuck time.Duration
	// Console receives every console line, as printed.
	Console io.Writer
}

// bootResult is what a run measured.
type bootResult struct {
	// Ready is the time from QEMU's start to /dev/kvm being ready.
	Ready time.Duration
	// Total is QEMU's whole run.
	Total time.Duration
	// Status is the inner command's exit status.
	Status int
}

// cmdline of the host kernel: a serial console; errors and worse on it
// (loglevel=4: RCU stalls and hung tasks are KERN_ERR) so that a wedged
// host says so; a soft lockup panics and a panic reboots, which ends QEMU
// (-no-reboot) at once with "ended before the command reported its
// status" instead of running out the whole timeout; and nothing slow the
// host does not need under TCG (mitigations only cost time in an emulated
// throwaway host). watchdog_thresh=60 (the most the kernel takes: a soft
// lockup after 120 s): with the default 10 s (20 s), a TCG vCPU starved
// by the machine's load was declared locked up in an IPI wait after 26 s
// (a fresh-clone make test, in internal/ept's tests) and the run was lost.
const hostCmdline = "console=ttyS0 panic=-1 softlockup_panic=1 watchdog_thresh=60 quiet loglevel=4 mitigations=off"

// boot runs the host VM to the end and returns what it measured. Errors
// say what was waited for: the host's readiness, or the inner command.
func boot(cfg bootConfig) (bootResult, error) {
	args := []string{
		"-accel", "tcg,thread=multi",
		// -cpu max: SVM with nested paging. (-cpu EPYC,+svm,+npt once
		// panicked the host kernel; PLATFORM.md, 2026-12-04.)
		"-cpu", "max",
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.Itoa(cfg.MemMiB),
		"-nodefaults", "-nographic", "-no-reboot",
		"-nic", "none",
		"-serial", "stdio",
		"-monitor", "none",
		"-kernel", cfg.Kernel.vmlinuz(),
		"-initrd", cfg.Initramfs,
		"-append", hostCmdline,
	}
	cmd := exec.Command(qemuBinary, args...)
	cmd.Stdin = nil
	cmd.Stderr = os.Stderr
	// Its own process group, so a timeout ends QEMU and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return bootResult{}, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return bootResult{}, fmt.Errorf("start %s (package qemu-system-x86): %w", qemuBinary, err)
	}
	res := bootResult{Status: -1}
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
		close(lines)
	}()
	timeout := time.NewTimer(cfg.Timeout)
	defer timeout.Stop()
	silence := cfg.Silence
	if silence == 0 {
		silence = cfg.Timeout
	}
	idle := time.NewTimer(silence)
	defer idle.Stop()
	stuck := cfg.Stuck
	if stuck == 0 {
		stuck = cfg.Timeout
	}
	progress := time.NewTimer(stuck)
	defer progress.Stop()
	var lastProgress string
	var hostErr, lastLine string
	// kill ends QEMU's process group and reaps it.
	kill := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := cmd.Wait()
				res.Total = time.Since(start)
				switch {
				case res.Status >= 0:
					return res, nil
				case hostErr != "":
					return res, fmt.Errorf("host VM: %s", hostErr)
				case res.Ready == 0:
					return res, fmt.Errorf("host VM ended (%v) before /dev/kvm was ready", err)
				}
				return res, &hostDiedError{err: err, last: lastLine}
			}
			fmt.Fprintln(cfg.Console, line)
			idle.Reset(silence)
			lastLine = line
			if isTestProgress(line) {
				progress.Reset(stuck)
				lastProgress = line
			}
			switch {
			// SeaBIOS's terminal escapes may precede the first line.
			case strings.HasSuffix(line, markReady):
				res.Ready = time.Since(start)
				fmt.Fprintf(cfg.Console, "hostvm: /dev/kvm ready %.1f s after QEMU started (%s)\n", res.Ready.Seconds(), cfg.Kernel.Package)
			case strings.HasPrefix(line, markExit):
				if n, err := strconv.Atoi(strings.TrimPrefix(line, markExit)); err == nil {
					res.Status = n
				}
			case strings.HasPrefix(line, markError):
				hostErr = strings.TrimSpace(strings.TrimPrefix(line, markError))
			case isHostStall(line):
				// The host kernel reports a CPU that stopped taking
				// interrupts; it does not come back (measured: RCU stall
				// reports every 63 s for 12 minutes, the console never
				// silent), so waiting for silence or the timeout wastes
				// the run.
				kill()
				return res, &wedgedError{last: line}
			}
		case <-idle.C:
			kill()
			return res, &wedgedError{silence: silence, last: lastLine}
		case <-progress.C:
			kill()
			return res, &wedgedError{stuck: stuck, last: lastProgress}
		case <-timeout.C:
			kill()
			what := "the command inside to finish"
			if res.Ready == 0 {
				what = "/dev/kvm to be ready"
			}
			return res, fmt.Errorf("host VM: waited %v for %s; QEMU killed", cfg.Timeout, what)
		}
	}
}

// isHostStall reports a host kernel line that says a CPU is stuck: an RCU
// CPU stall or a soft lockup. Seen in the emulated host in 2 of 3 smoke
// runs on one busy day (a host CPU stuck in smp_call_function_many_cond's
// IPI wait, the other presumably inside its nested guest and not taking
// the IPI: QEMU TCG's SVM, not samsara, since samsara runs in that
// guest's user space); none in the other runs. The RCU reports are
// matched by their common words: "rcu_preempt detected stalls",
// "rcu_preempt self-detected stall" and "detected expedited stalls" are
// the kernel's variants (kernel/rcu/tree_stall.h).
func isHostStall(line string) bool {
	if strings.Contains(line, "rcu: INFO: ") && strings.Contains(line, "stall") {
		return true
	}
	return strings.Contains(line, "watchdog: BUG: soft lockup") || strings.Contains(line, "Watchdog detected hard LOCKUP")
}

// hostDiedError is a host VM that ended (a host kernel panic: a soft
// lockup under TCG) before the command inside reported its status.
type hostDiedError struct {
	err  error
	last string
}

func (e *hostDiedError) Error() string {
	return fmt.Sprintf("host VM ended (%v) before the command inside reported its status; its last line: %q", e.err, e.last)
}

// wedgedError is a host VM that printed nothing for too long (silence),
// started or ended no test for too long (stuck), or whose kernel reported
// a stuck CPU (neither).
type wedgedError struct {
	silence time.Duration
	stuck   time.Duration
	last    string
}

func (e *wedgedError) Error() string {
	if e.stuck != 0 {
		return fmt.Sprintf("host VM printed no test progress for %v (wedged); QEMU killed; the last progress: %q", e.stuck, e.last)
	}
	if e.silence == 0 {
		return fmt.Sprintf("host VM kernel reports a stuck CPU (wedged); QEMU killed; the report: %q", e.last)
	}
	return fmt.Sprintf("host VM printed nothing for %v (wedged); QEMU killed; its last line: %q", e.silence, e.last)
}
