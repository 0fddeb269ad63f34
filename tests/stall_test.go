package tests

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStallEndsWithError makes a recording stop making progress on
// purpose and checks that it ends with the stall error within its bound,
// naming every vCPU's state, and that what was recorded before still
// replays (issue 19 item 2). The guest: race's two threads counting in
// guest user mode for far longer than the test, under the serialized
// recorder with state stops off (--state-stops=false), which then cannot
// preempt guest user code without a PMU (README, "How record and replay
// work"): the vCPU whose turn it is makes no exit, so no chunk ends. (So
// does the parallel recorder's without them, under PVM; in the emulated
// SVM host it is too slow to reach the loop in time.)
func TestStallEndsWithError(t *testing.T) {
	requireKVM(t)
	ckpt := bootedCheckpoint(t, 2)
	rec := filepath.Join(t.TempDir(), "stall.zst")
	// stallLimit is the bound under test; the command's own bound adds
	// the resume and the chunks before the loop (seconds here) and the
	// emulated host's slowness (tests/hostvm), with a wide margin.
	const stallLimit = 5 * time.Second
	start := time.Now()
	r := samsara(t, 3*time.Minute, "record", "--cpus", "2", "--from-checkpoint", ckpt,
		"--stall-limit", stallLimit.String(), "--state-stops=false", "-o", rec, "--", "race", fmt.Sprint(int64(1)<<50))
	if r.status == 0 {
		t.Fatalf("a recording that cannot make progress exited 0 after %v\nstderr:\n%s", time.Since(start), tail(r.stderr))
	}
	if !strings.Contains(r.stderr, "record made no progress for") {
		t.Fatalf("record exited %d without the stall error\nstderr:\n%s", r.status, tail(r.stderr))
	}
	for cpu := 0; cpu < 2; cpu++ {
		re := regexp.MustCompile(fmt.Sprintf(`vcpu %d (running|halted|wait-sipi|dead) at RIP 0x[0-9a-f]+ CPL [0-3], last exit \d+`, cpu))
		if !re.MatchString(r.stderr) {
			t.Errorf("the stall error does not name vcpu %d's state (%s)\nstderr:\n%s", cpu, re, tail(r.stderr))
		}
	}
	if !strings.Contains(r.stderr, "CPL 3") {
		t.Errorf("no vCPU stood in guest user mode, where race's threads count\nstderr:\n%s", tail(r.stderr))
	}
	rp := samsara(t, 3*time.Minute, "replay", rec, "--from-checkpoint", ckpt)
	if rp.status != 0 || !regexp.MustCompile(`replay matched the recorded prefix \([1-9]\d* chunks`).MatchString(rp.stderr) {
		t.Fatalf("replay of the stalled recording's prefix: status %d, want 0 and the prefix matched\nstderr:\n%s", rp.status, tail(rp.stderr))
	}
}
