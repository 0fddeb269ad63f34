package tests

import (
	"encoding/json"
	"fmt"
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
