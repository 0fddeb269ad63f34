package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// samsaraRunner measures workloads under samsara from booted checkpoints.
type samsaraRunner struct {
	// bin, kernel and initrd are the samsara binary and the guest.
	bin, kernel, initrd string
	// dir holds checkpoints and recordings.
	dir string
	// timeout bounds one command.
	timeout time.Duration
	// parallel says whether `record --mode parallel` exists.
	parallel bool
}

// replayMatched is what `samsara replay` prints (cmd/samsara/replay.go)
// when the replay verified the recording.
const replayMatched = "replay matched the recording"

// checkpoint boots the guest on n vCPUs once and saves the machine at
// init's checkpoint request, so every run below skips the boot.
func (s samsaraRunner) checkpoint(n int) (string, error) {
	ck := filepath.Join(s.dir, fmt.Sprintf("boot-%d.ckpt", n))
	o, out := runCmd(s.timeout, s.bin, "run", "--cpus", fmt.Sprint(n), "--kernel", s.kernel, "--initrd", s.initrd, "--save-checkpoint", ck, "--", "true")
	if !o.ok() {
		return "", fmt.Errorf("samsara: boot %d vCPUs to a checkpoint: %s\n%s", n, o.Err, out)
	}
	return ck, nil
}

// workload runs, records and replays "w n tiny" on n vCPUs from ck.
func (s samsaraRunner) workload(ck, w string, n int) samsaraResult {
	return s.measure(ck, w, n, workloadSize)
}

// userHeavy measures "w n small" like workload, and the parallel recorder
// without its privilege-change ends and early conflicts (Baseline).
func (s samsaraRunner) userHeavy(ck, w string, n int) samsaraResult {
	r := s.measure(ck, w, n, userHeavySize)
	if !s.parallel {
		return r
	}
	argv := []string{w, fmt.Sprint(n), userHeavySize}
	rec := filepath.Join(s.dir, fmt.Sprintf("%s-%d-baseline.zst", w, n))
	r.Baseline, _ = runCmdEnv(s.timeout, nil, s.bin,
		append([]string{"record", "--mode", "parallel", "--privilege-ends=false", "--early-conflicts=false", "--cpus", fmt.Sprint(n), "--from-checkpoint", ck, "-o", rec, "--"}, argv...)...)
	if r.Baseline.ok() {
		if sum, err := inspect(s.bin, rec); err == nil {
			r.BaselineSquashes, r.BaselineChunks = sum.squashes, sum.chunks
		}
	}
	return r
}

// measure runs, records (both recorders) and replays "w n size".
func (s samsaraRunner) measure(ck, w string, n int, size string) samsaraResult {
	return s.measureArgv(ck, n, []string{w, fmt.Sprint(n), size})
}

// measureArgv runs, records (both recorders) and replays argv on n vCPUs.
func (s samsaraRunner) measureArgv(ck string, n int, argv []string) samsaraResult {
	w := argv[0]
	cpus := fmt.Sprint(n)
	r := samsaraResult{VCPUs: n}
	r.Run, _ = runCmd(s.timeout, s.bin, append([]string{"run", "--cpus", cpus, "--from-checkpoint", ck, "--"}, argv...)...)

	rec := filepath.Join(s.dir, fmt.Sprintf("%s-%d.zst", w, n))
	r.Record, _ = runCmd(s.timeout, s.bin, append([]string{"record", "--mode", "serialized", "--cpus", cpus, "--from-checkpoint", ck,
		"--profile-json", rec + ".profile", "-o", rec, "--"}, argv...)...)
	r.RecordProfile = readProfile(rec + ".profile")
	if st, err := os.Stat(rec); err == nil {
		r.LogBytes = st.Size()
	}
	if r.Record.ok() {
		r.Replay = s.replay(rec, ck)
		if sum, err := inspect(s.bin, rec); err == nil {
			r.GuestNanos = sum.guestNanos
		}
	}
	if s.parallel {
		prec := filepath.Join(s.dir, fmt.Sprintf("%s-%d-parallel.zst", w, n))
		r.Parallel, _ = runCmd(s.timeout, s.bin, append([]string{"record", "--mode", "parallel", "--cpus", cpus, "--from-checkpoint", ck,
			"--profile-json", prec + ".profile", "-o", prec, "--"}, argv...)...)
		r.ParallelProfile = readProfile(prec + ".profile")
		if r.Parallel.ok() {
			r.ParallelReplay = s.replay(prec, ck)
			if sum, err := inspect(s.bin, prec); err == nil {
				r.Squashes, r.Chunks = sum.squashes, sum.chunks
			}
		}
	}
	return r
}

// readProfile reads a record --profile-json file; nil when the record
// wrote none.
func readProfile(path string) *recordProfile {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var p recordProfile
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	return &p
}

// replay replays rec and requires samsara to say that it matched.
func (s samsaraRunner) replay(rec, ck string) outcome {
	o, out := runCmd(s.timeout, s.bin, "replay", rec, "--from-checkpoint", ck)
	if o.ok() && !strings.Contains(out, replayMatched) {
		o.Err = "exit 0 but no \"" + replayMatched + "\""
	}
	return o
}

// recordingSummary is what the report needs from `samsara inspect --json`.
type recordingSummary struct {
	guestNanos       uint64
	squashes, chunks int
}

// inspect reads a recording's guest time and chunk counts.
func inspect(bin, rec string) (recordingSummary, error) {
	out, err := exec.Command(bin, "inspect", "--json", rec).Output()
	if err != nil {
		return recordingSummary{}, err
	}
	var j struct {
		VCPUs []struct {
			Chunks   int `json:"chunks"`
			Squashes int `json:"squashes"`
		} `json:"vcpus"`
		End *struct {
			GuestNanos uint64 `json:"guest_nanos"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return recordingSummary{}, err
	}
	var s recordingSummary
	if j.End != nil {
		s.guestNanos = j.End.GuestNanos
	}
	for _, v := range j.VCPUs {
		s.chunks += v.Chunks
		s.squashes += v.Squashes
	}
	return s, nil
}

// hasParallelMode reads `samsara record --help` for a parallel recorder.
func hasParallelMode(bin string) bool {
	out, _ := exec.Command(bin, "record", "--help").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "--mode") && strings.Contains(l, "parallel") {
			return true
		}
	}
	return false
}

// runCmd runs a command to completion (killing it after timeout) and
// returns its wall time and combined output; Err is the exit error and
// the output's last line.
func runCmd(timeout time.Duration, name string, args ...string) (outcome, string) {
	return runCmdEnv(timeout, nil, name, args...)
}

// runCmdEnv is runCmd with env added to the environment.
func runCmdEnv(timeout time.Duration, env []string, name string, args ...string) (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	o := outcome{Wall: time.Since(start), Ran: true}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			o.MaxRSSKiB = ru.Maxrss // KiB on Linux (getrusage(2))
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		o.Err = fmt.Sprintf("killed after %v", timeout)
	} else if err != nil {
		o.Err = fmt.Sprintf("%v: %s", err, lastLine(string(out)))
	}
	return o, string(out)
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
