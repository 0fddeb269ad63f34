package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// workloads are the PARSEC-style programs of guest-images/workloads; each
// checks its own result against a serial computation.
var workloads = []string{"blackscholes", "swaptions", "streamcluster", "canneal", "fluidanimate", "dedup", "raytrace"}

// TestWorkloadsRun runs every workload at its tiny size with 2 threads
// under `samsara run` on 1 and 2 vCPUs and checks its own verdict.
func TestWorkloadsRun(t *testing.T) {
	for _, cpus := range []int{1, 2} {
		ckpt := bootedCheckpoint(t, cpus)
		for _, w := range workloads {
			t.Run(fmt.Sprintf("%dcpu/%s", cpus, w), func(t *testing.T) {
				r := samsara(t, resumeTimeout, "run", "--cpus", fmt.Sprint(cpus), "--from-checkpoint", ckpt, "--", w, "2", "tiny")
				if r.status != 0 || !strings.Contains(r.stdout, w+": ") || !strings.Contains(r.stdout, " ok") {
					t.Fatalf("%s on %d vCPUs: status %d\nstdout:\n%s\nstderr:\n%s", w, cpus, r.status, tail(r.stdout), tail(r.stderr))
				}
			})
		}
	}
}

// TestWorkloadsRecordReplay records every workload's tiny size on 2
// vCPUs and replays it (issue 5's CI regression). Replays are correct but
// can take minutes when the recorder preempted a vCPU inside a hot guest
// kernel loop (replay stops at every pass of the breakpoint), so it runs
// only with SAMSARA_WORKLOAD_REPLAY=1 until preemption points are cheaper
// to find (issue 3/5 notes).
func TestWorkloadsRecordReplay(t *testing.T) {
	if os.Getenv("SAMSARA_WORKLOAD_REPLAY") != "1" {
		t.Skip("replaying workloads can take minutes at hot preemption points (issue 3/5 notes); set SAMSARA_WORKLOAD_REPLAY=1")
	}
	ckpt := bootedCheckpoint(t, 2)
	for _, w := range workloads {
		t.Run(w, func(t *testing.T) {
			out, _ := recordAndReplayN(t, 1, 2, ckpt, nil, w, "2", "tiny")
			if !strings.Contains(out, " ok") {
				t.Fatalf("%s output:\n%s", w, out)
			}
		})
	}
}
