package tests

import (
	"fmt"
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
// vCPUs with each recorder and replays it with verification (issue 5's CI
// regression): the console output and the final digests must match.
func TestWorkloadsRecordReplay(t *testing.T) {
	ckpt := bootedCheckpoint(t, 2)
	for _, mode := range []string{"serialized", "parallel"} {
		for _, w := range workloads {
			t.Run(mode+"/"+w, func(t *testing.T) {
				out, _ := recordAndReplayFlags(t, 1, 2, ckpt, []string{"--mode", mode}, nil, w, "2", "tiny")
				if !strings.Contains(out, " ok") {
					t.Fatalf("%s output:\n%s", w, out)
				}
			})
		}
	}
}
