package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/suite"
)

// workloads are the PARSEC-style programs of guest-images/workloads; each
// checks its own result against a serial computation.
var workloads = []string{"blackscholes", "swaptions", "streamcluster", "canneal", "fluidanimate", "dedup", "raytrace"}

// suiteOnlyFull are the workloads suites/short.yaml leaves out (its
// comment says why); TestSuite checks that the others are in it.
var suiteOnlyFull = []string{"streamcluster"}

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

// TestWorkloadsRecordReplay records the tiny size on 2 vCPUs with each
// recorder and replays it with verification (issue 5's CI regression):
// the console output and the final digests must match. TestSuite does
// this for every workload of suites/short.yaml, so here only the ones the
// short suite leaves out (suiteOnlyFull).
func TestWorkloadsRecordReplay(t *testing.T) {
	ckpt := bootedCheckpoint(t, 2)
	for _, mode := range []string{"serialized", "parallel"} {
		for _, w := range suiteOnlyFull {
			t.Run(mode+"/"+w, func(t *testing.T) {
				out, _ := recordAndReplayFlags(t, 1, 2, ckpt, []string{"--mode", mode}, nil, w, "2", "tiny")
				if !strings.Contains(out, " ok") {
					t.Fatalf("%s output:\n%s", w, out)
				}
			})
		}
	}
}

// TestShortSuiteCoversWorkloads checks that TestSuite (suites/short.yaml)
// and TestWorkloadsRecordReplay (suiteOnlyFull) together record and
// replay every workload, so that trimming one does not drop a workload
// from make test. It needs no KVM: an initrd path of "" leaves the
// suite's programs unchecked.
func TestShortSuiteCoversWorkloads(t *testing.T) {
	s, err := suite.Load("../suites/short.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, w := range s.Workloads {
		covered[w.Command[0]] = true
	}
	for _, w := range suiteOnlyFull {
		if covered[w] {
			t.Errorf("%s is in suites/short.yaml and in suiteOnlyFull: it is recorded twice", w)
		}
		covered[w] = true
	}
	for _, w := range workloads {
		if !covered[w] {
			t.Errorf("workload %s is neither in suites/short.yaml nor in suiteOnlyFull: make test would not record it", w)
		}
	}
}
