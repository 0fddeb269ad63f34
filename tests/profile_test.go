package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecordProfile records race on 2 vCPUs with each recorder and
// --profile (issue 18): the printed table has a row per vCPU, the JSON's
// phases fit in the wall time, each recorder's own phases are there (the
// parallel one harvests, checkpoints and commits; the serialized one
// makes each vCPU wait for its turn while the other runs), and the
// profiled recording replays matched.
func TestRecordProfile(t *testing.T) {
	requireGuest(t)
	ckpt := bootedCheckpoint(t, 2)
	for _, mode := range []string{"serialized", "parallel"} {
		t.Run(mode, func(t *testing.T) {
			js := filepath.Join(t.TempDir(), "profile.json")
			rec := filepath.Join(t.TempDir(), "rec.zst")
			r := samsara(t, resumeTimeout, "record", "--cpus", "2", "--from-checkpoint", ckpt, "--mode", mode,
				"--profile", "--profile-json", js, "-o", rec, "--", "race", "100000")
			if r.status != 0 {
				t.Fatalf("record exited %d\n%s", r.status, tail(r.stderr))
			}
			for _, want := range []string{"profile:", "guest", "squashed", "vcpu 0 ", "vcpu 1 "} {
				if !strings.Contains(r.stderr, want) {
					t.Fatalf("--profile printed no %q:\n%s", want, tail(r.stderr))
				}
			}
			p := readProfile(t, js)
			if p.Wall <= 0 || p.Wall > r.elapsed.Seconds() || len(p.VCPUs) != 2 {
				t.Fatalf("profile wall %.3fs over %d vCPUs; want 0 < wall <= the command's %.3fs, 2 vCPUs", p.Wall, len(p.VCPUs), r.elapsed.Seconds())
			}
			for i, v := range p.VCPUs {
				sum := 0.0
				for k, s := range v {
					if s < 0 {
						t.Errorf("vcpu %d: %s %.3fs is negative", i, k, s)
					}
					if k != "other" {
						sum += s
					}
				}
				// 2%: the phases are timed apart from the wall clock's
				// two reads; they may overlap it by that much at most.
				if sum > 1.02*p.Wall {
					t.Errorf("vcpu %d: phases sum to %.3fs, over the wall time %.3fs: %v", i, sum, p.Wall, v)
				}
				if v["guest"] <= 0 {
					t.Errorf("vcpu %d: no guest time: %v", i, v)
				}
				checkModePhases(t, mode, i, v)
			}
			p2 := samsara(t, resumeTimeout, "replay", rec, "--from-checkpoint", ckpt)
			if p2.status != 0 || !strings.Contains(p2.stderr, "replay matched") || p2.stdout != r.stdout {
				t.Fatalf("the profiled recording's replay: status %d, printed %q (the recording printed %q)\n%s", p2.status, p2.stdout, r.stdout, tail(p2.stderr))
			}
		})
	}
}

// checkModePhases checks the phases only one recorder has.
func checkModePhases(t *testing.T, mode string, i int, v map[string]float64) {
	t.Helper()
	switch mode {
	case "parallel":
		for _, k := range []string{"harvest", "commit", "checkpoint"} {
			if v[k] <= 0 {
				t.Errorf("vcpu %d: the parallel recorder spent no time in %s: %v", i, k, v)
			}
		}
	case "serialized":
		if v["wait"] <= 0 {
			t.Errorf("vcpu %d: never waited for its turn: %v", i, v)
		}
		for _, k := range []string{"harvest", "commit", "checkpoint", "squashed"} {
			if v[k] != 0 {
				t.Errorf("vcpu %d: the serialized recorder has no %s, but spent %.3fs in it", i, k, v[k])
			}
		}
	}
}

// profileJSON is record --profile-json's file.
type profileJSON struct {
	Wall  float64              `json:"wall_seconds"`
	VCPUs []map[string]float64 `json:"vcpus"`
}

func readProfile(t *testing.T, path string) profileJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p profileJSON
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return p
}
