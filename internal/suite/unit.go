package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// runUnit runs one workload on one vCPU count: the run baseline, then
// each recorder's case.
func (r *runner) runUnit(ctx context.Context, w *Workload, vcpus int, cases []*Case) {
	ckpt, err := r.checkpoint(ctx, w, vcpus)
	if err != nil {
		for _, c := range cases {
			c.Failures = append(c.Failures, Failure{Kind: "error", Message: err.Error()})
		}
		return
	}
	args := []string{"run", "--cpus", strconv.Itoa(vcpus), "--from-checkpoint", ckpt}
	args = append(append(append(args, machineFlags(w)...), programFlags(w)...), "--")
	run := r.exec(ctx, vcpus, w.Timeout.Duration, append(args, w.Command...)...)
	r.progress("%s/%dcpu run: %.1fs, exit %d", w.Name, vcpus, run.wall.Seconds(), run.status)
	runFail := checkOutput("run", run, w.Expect)
	for _, c := range cases {
		c.RunSeconds, c.RunMaxRSSKiB = run.wall.Seconds(), run.maxRSS
		if runFail != "" {
			c.Failures = append(c.Failures, Failure{Kind: "error", Message: runFail})
		}
		r.recordCase(ctx, w, ckpt, c)
	}
}

// checkOutput is the failure message of a run or record job that did not
// exit 0 or whose output does not match expect; "" if it passed.
func checkOutput(what string, j jobResult, expect string) string {
	if j.err != nil || j.status != 0 {
		return j.failure(what) + "\nconsole:\n" + lastLines(j.stdout, tailLines)
	}
	if expect != "" && !regexp.MustCompile(expect).MatchString(j.stdout) { // compiled in check
		return fmt.Sprintf("%s: the output does not match %q:\n%s", what, expect, lastLines(j.stdout, tailLines))
	}
	return ""
}

// recordCase records w with c's recorder, measures the recording and
// replays it; a failed case keeps its files.
func (r *runner) recordCase(ctx context.Context, w *Workload, ckpt string, c *Case) {
	rec := filepath.Join(r.opts.OutDir, "work", fileName(c.Name)+".zst")
	args := []string{"record", "--cpus", strconv.Itoa(c.VCPUs), "--from-checkpoint", ckpt, "--mode", c.Mode, "-o", rec}
	if r.opts.Daemon != "" {
		args = append(args, "--daemon", r.opts.Daemon, "--name", c.Name, "--label", "suite="+fileName(c.Name))
	}
	args = append(append(append(args, machineFlags(w)...), programFlags(w)...), "--")
	j := r.exec(ctx, c.VCPUs, w.Timeout.Duration, append(args, w.Command...)...)
	r.progress("%s record: %.1fs, exit %d", c.Name, j.wall.Seconds(), j.status)
	c.RecordSeconds, c.RecordMaxRSSKiB = j.wall.Seconds(), j.maxRSS
	if c.RunSeconds > 0 {
		c.RecordRunRatio = c.RecordSeconds / c.RunSeconds
	}
	console := []namedText{{"record-console.txt", j.stdout}, {"record-stderr.txt", j.stderr}}
	if msg := checkOutput("record", j, w.Expect); msg != "" {
		c.Failures = append(c.Failures, Failure{Kind: "error", Message: msg})
	}
	if _, err := os.Stat(rec); err != nil {
		r.keep(c, w, console, ckpt)
		return
	}
	if err := r.measure(ctx, w, rec, c); err != nil {
		c.Failures = append(c.Failures, Failure{Kind: "error", Message: err.Error()})
	}
	replayArgs := append([]string{"replay", rec, "--from-checkpoint", ckpt}, machineFlags(w)...)
	if r.opts.Daemon != "" {
		m := daemonRecording.FindStringSubmatch(j.stderr)
		if m == nil {
			c.Failures = append(c.Failures, Failure{Kind: "error", Message: "record --daemon named no recording id:\n" + lastLines(j.stderr, tailLines)})
			r.keep(c, w, console, ckpt)
			return
		}
		replayArgs = []string{"replay", "--daemon", r.opts.Daemon, m[1]}
	}
	var total float64
	for i := 0; i < *w.Replays; i++ {
		p := r.exec(ctx, c.VCPUs, w.Timeout.Duration, replayArgs...)
		r.progress("%s replay %d/%d: %.1fs, exit %d", c.Name, i+1, *w.Replays, p.wall.Seconds(), p.status)
		c.ReplaySeconds = append(c.ReplaySeconds, p.wall.Seconds())
		c.ReplayMaxRSSKiB = max(c.ReplayMaxRSSKiB, p.maxRSS)
		total += p.wall.Seconds()
		n := strconv.Itoa(i + 1)
		console = append(console, namedText{"replay" + n + "-console.txt", p.stdout}, namedText{"replay" + n + "-stderr.txt", p.stderr})
		if f := checkReplay(i+1, p, j.stdout, r.opts.Daemon != ""); f != nil {
			c.Failures = append(c.Failures, *f)
		}
	}
	if c.RecordSeconds > 0 && *w.Replays > 0 {
		c.ReplayRecordRatio = total / float64(*w.Replays) / c.RecordSeconds
	}
	if len(c.Failures) > 0 {
		r.keep(c, w, console, ckpt)
	} else {
		r.pending(c, w, console, ckpt)
	}
}

// daemonRecording is the line of `samsara record --daemon` that names the
// recording (cmd/samsara/client.go).
var daemonRecording = regexp.MustCompile(`samsara: recording (\S+) \(`)

// checkReplay is a replay's failure: a divergence (samsara's DIVERGED
// line), a replay that did not end or exit 0, or one whose console
// differs from the recording's. A replay through the daemon prints
// "replay RID matched recording ID" and no console (the daemon keeps it).
func checkReplay(n int, p jobResult, recorded string, viaDaemon bool) *Failure {
	what := fmt.Sprintf("replay %d", n)
	if p.err != nil || p.status != 0 {
		kind := "error"
		for _, l := range strings.Split(p.stderr, "\n") {
			if strings.Contains(l, "DIVERGED") {
				return &Failure{Kind: "divergence", Message: what + ": " + strings.TrimSpace(l)}
			}
		}
		return &Failure{Kind: kind, Message: p.failure(what)}
	}
	if viaDaemon {
		if !regexp.MustCompile(`replay \S+ matched`).MatchString(p.stderr) {
			return &Failure{Kind: "divergence", Message: what + " through the daemon exited 0 without \"matched\":\n" + lastLines(p.stderr, tailLines)}
		}
		return nil
	}
	if !strings.Contains(p.stderr, "replay matched") {
		return &Failure{Kind: "divergence", Message: what + " exited 0 without \"replay matched\":\n" + lastLines(p.stderr, tailLines)}
	}
	if p.stdout != recorded {
		return &Failure{Kind: "divergence", Message: fmt.Sprintf("%s printed\n%s\nbut the recording printed\n%s", what, lastLines(p.stdout, tailLines), lastLines(recorded, tailLines))}
	}
	return nil
}

// inspectSummary is the part of `samsara inspect --json` the suite reads
// (internal/log.Summary; read from the child's JSON, so the suite needs
// none of the log package).
type inspectSummary struct {
	Stats struct {
		FileBytes int64 `json:"file_bytes"`
	} `json:"stats"`
	VCPUs []struct {
		Chunks uint64 `json:"chunks"`
	} `json:"vcpus"`
	End *struct {
		GuestNanos uint64 `json:"guest_nanos"`
	} `json:"end"`
	Recorder *struct {
		VCPUs []struct {
			Commits  uint64 `json:"commits"`
			Squashes uint64 `json:"squashes"`
		} `json:"vcpus"`
	} `json:"recorder"`
}

// measure fills c's log figures from `samsara inspect --json`.
func (r *runner) measure(ctx context.Context, w *Workload, rec string, c *Case) error {
	j := r.exec(ctx, 1, w.Timeout.Duration, "inspect", "--json", rec)
	if j.err != nil || j.status != 0 {
		return fmt.Errorf("%s", j.failure("inspect --json"))
	}
	var s inspectSummary
	if err := json.Unmarshal([]byte(j.stdout), &s); err != nil {
		return fmt.Errorf("inspect --json of %s: %w", rec, err)
	}
	c.LogBytes = s.Stats.FileBytes
	for _, v := range s.VCPUs {
		c.Chunks += v.Chunks
	}
	if s.End != nil && s.End.GuestNanos > 0 {
		c.GuestSeconds = float64(s.End.GuestNanos) / 1e9
		c.LogRate = float64(c.LogBytes) / c.GuestSeconds
	}
	if s.Recorder != nil {
		var commits, squashes uint64
		for _, v := range s.Recorder.VCPUs {
			commits, squashes = commits+v.Commits, squashes+v.Squashes
		}
		if commits+squashes > 0 {
			c.SquashRate = float64(squashes) / float64(commits+squashes)
		}
	}
	return nil
}

// fileName turns a case name into a file or folder name.
func fileName(name string) string { return strings.ReplaceAll(name, "/", "_") }

// namedText is a file to keep for a failed case.
type namedText struct{ name, text string }

// copyFile copies src to dst (a hard link when they share a file system).
func copyFile(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("keep: %w", err)
	}
	return out.Close()
}
