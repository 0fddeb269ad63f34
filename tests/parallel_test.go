package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parallelCPUs is the machine size of the parallel recorder's end-to-end
// tests: two vCPUs run chunks at once.
const parallelCPUs = 2

// parallelFlags selects the parallel recorder (record only: replay reads
// the mode from the log header).
var parallelFlags = []string{"--mode", "parallel"}

// TestParallelConflicts records the conflicts program (every kind of page
// conflict between two threads: write-write, read of a page the other
// writes, false sharing, lock-protected counters, a Dekker handshake, and
// racy increments) with the parallel recorder on 2 vCPUs and replays it
// 5 times; the program checks its own invariants and every replay must
// print what the recording printed and reach the same final digests.
func TestParallelConflicts(t *testing.T) {
	ckpt := bootedCheckpoint(t, parallelCPUs)
	out, rec := recordAndReplayFlags(t, replays, parallelCPUs, ckpt, parallelFlags, nil, "conflicts")
	if !strings.Contains(out, "conflicts: ok") {
		t.Fatalf("conflicts did not report ok:\n%s", out)
	}
	s := inspectJSON(t, rec)
	if s.Header.Mode != "parallel" {
		t.Fatalf("inspect --json of a parallel recording reports mode %q", s.Header.Mode)
	}
	t.Logf("recorded output:\n%s%s", out, s.recorderLine())
}

// TestParallelRecordReplay records the serialized recorder's end-to-end
// programs (recordPrograms) with the parallel recorder on 2 vCPUs and
// replays each 5 times, with TestRecordReplay's assertions, and checks
// that inspect --json reports the parallel recorder.
func TestParallelRecordReplay(t *testing.T) {
	ckpt := bootedCheckpoint(t, parallelCPUs)
	for _, prog := range recordPrograms {
		t.Run(fmt.Sprintf("%dcpu/%s", parallelCPUs, prog[0]), func(t *testing.T) {
			out, rec := recordAndReplayFlags(t, replays, parallelCPUs, ckpt, parallelFlags, nil, prog...)
			checkProgramOutput(t, prog, out)
			s := inspectJSON(t, rec)
			if s.Header.Mode != "parallel" {
				t.Fatalf("inspect --json reports mode %q, want parallel", s.Header.Mode)
			}
			// Every program returns to user mode and enters the kernel:
			// chunks end there (the checkpoint carries the kernel's
			// addresses; det_bounds.go).
			if s.ChunkReasons["privilege"] == 0 {
				t.Errorf("no chunk ended at a privilege change: reasons %v", s.ChunkReasons)
			}
			t.Logf("%s chunk ends %v", s.recorderLine(), s.ChunkReasons)
		})
	}
}

// checkProgramOutput is testRecordReplay's check of a recorded program's
// output: every program but true prints a line starting with its name.
func checkProgramOutput(t *testing.T, prog []string, out string) {
	t.Helper()
	if prog[0] != "true" && !strings.Contains(out, prog[0]+":") {
		t.Fatalf("no output from %s:\n%s", prog[0], out)
	}
}

// inspectSummary is the part of `samsara inspect --json` these tests read.
type inspectSummary struct {
	Header struct {
		Mode string `json:"mode"`
	} `json:"header"`
	ChunkReasons map[string]uint64 `json:"chunk_reasons"`
	Recorder     *struct {
		Tracker string `json:"tracker"`
		VCPUs   []struct {
			Commits       uint64 `json:"commits"`
			Squashes      uint64 `json:"squashes"`
			ExclusiveRuns uint64 `json:"exclusive_runs"`
		} `json:"vcpus"`
	} `json:"recorder"`
}

// inspectJSON runs `samsara inspect --json` on a recording.
func inspectJSON(t *testing.T, rec string) inspectSummary {
	t.Helper()
	p := samsara(t, resumeTimeout, "inspect", "--json", rec)
	if p.status != 0 {
		t.Fatalf("inspect --json %s: status %d\nstderr:\n%s", rec, p.status, tail(p.stderr))
	}
	var s inspectSummary
	if err := json.Unmarshal([]byte(p.stdout), &s); err != nil {
		t.Fatalf("inspect --json output is not JSON: %v\n%s", err, tail(p.stdout))
	}
	return s
}

// recorderLine summarises the parallel recorder's counters for the test
// log (how much conflict the recording actually had).
func (s inspectSummary) recorderLine() string {
	if s.Recorder == nil {
		return "no recorder counters\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tracker %s:", s.Recorder.Tracker)
	for i, v := range s.Recorder.VCPUs {
		fmt.Fprintf(&b, " vcpu %d %d commits %d squashes %d exclusive;", i, v.Commits, v.Squashes, v.ExclusiveRuns)
	}
	return b.String() + "\n"
}

// TestDebugWritesReported: a parallel recording made with the hidden
// --debug-writes FILE replays with no mismatch against FILE, and a
// replay against a FILE with one page hash and one chunk end changed
// names both, without -v (TestCorpus prints these lines when its parallel
// replay diverges; before, they went to a no-op logger and were lost).
func TestDebugWritesReported(t *testing.T) {
	ckpt := bootedCheckpoint(t, parallelCPUs)
	dir := t.TempDir()
	rec, dw := filepath.Join(dir, "rec.zst"), filepath.Join(dir, "rec.writes")
	r := samsara(t, resumeTimeout, append(append([]string{"record", "--cpus", fmt.Sprint(parallelCPUs), "--from-checkpoint", ckpt, "-o", rec, "--debug-writes", dw}, parallelFlags...), "--", "race", "20000")...)
	if r.status != 0 {
		t.Fatalf("record: status %d\n%s", r.status, tail(r.stderr))
	}
	p := samsara(t, resumeTimeout, "replay", rec, "--from-checkpoint", ckpt, "--debug-writes", dw)
	if p.status != 0 || strings.Contains(p.stderr, "mismatch") {
		t.Fatalf("replay against its own --debug-writes file: status %d\n%s", p.status, tail(p.stderr))
	}
	raw, err := os.ReadFile(dw)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	page, end := false, false
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case !page && len(f) == 3 && f[0] != "e":
			lines[i], page = f[0]+" "+f[1]+" 1", true
		case !end && len(f) > 3 && f[0] == "e":
			regs, exit, _ := strings.Cut(l, " | ")
			g := strings.Fields(regs)
			g[3] = "123456789" // rax
			lines[i], end = strings.Join(g, " ")+" | "+exit, true
		}
	}
	if !page || !end {
		t.Fatalf("the --debug-writes file has no page line (%v) or no chunk end line (%v):\n%s", page, end, tail(string(raw)))
	}
	bad := filepath.Join(dir, "bad.writes")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	q := samsara(t, resumeTimeout, "replay", rec, "--from-checkpoint", ckpt, "--debug-writes", bad)
	for _, want := range []string{"write mismatch", "chunk end mismatch", "rax 0x123456789, replayed"} {
		if !strings.Contains(q.stderr, want) {
			t.Errorf("replay against a changed --debug-writes file does not say %q:\n%s", want, tail(q.stderr))
		}
	}
}
