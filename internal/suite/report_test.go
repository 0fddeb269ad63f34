package suite

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleResults() *Results {
	return &Results{Suite: "t", HostCPUs: 2, WallSeconds: 10, Cases: []*Case{
		{Name: "a/2cpu/serialized", Workload: "a", VCPUs: 2, Mode: "serialized", RunSeconds: 2, RecordSeconds: 3,
			RecordRunRatio: 1.5, LogRate: 1000, ReplaySeconds: []float64{1}, Thresholds: Thresholds{1.5, 1.5}},
		{Name: "a/2cpu/parallel", Workload: "a", VCPUs: 2, Mode: "parallel", RunSeconds: 2, RecordSeconds: 4,
			RecordRunRatio: 2, LogRate: 2000, ReplaySeconds: []float64{1}, Thresholds: Thresholds{1.5, 1.5}},
	}}
}

func TestCompare(t *testing.T) {
	// Against itself: nothing regressed.
	r := sampleResults()
	Compare(r, sampleResults())
	if r.Failed() != 0 {
		t.Fatalf("against its own figures: %+v", r.Cases[0].Failures)
	}
	// A baseline 2x better in record/run for one case, in log rate for
	// the other: each fails naming its figure.
	base := sampleResults()
	base.Cases[0].RecordRunRatio /= 2
	base.Cases[1].LogRate /= 2
	r = sampleResults()
	Compare(r, base)
	for i, want := range []string{"record_run_ratio", "log_rate"} {
		f := r.Cases[i].Failures
		if len(f) != 1 || f[0].Figure != want || f[0].Kind != "regression" || !strings.Contains(f[0].Message, want+" regressed") {
			t.Errorf("case %s: failures %+v, want one regression of %s", r.Cases[i].Name, f, want)
		}
	}
	// Within the threshold (1.4x < 1.5x): passes.
	base = sampleResults()
	base.Cases[0].RecordRunRatio /= 1.4
	r = sampleResults()
	Compare(r, base)
	if r.Failed() != 0 {
		t.Fatalf("1.4x with a 1.5x threshold failed: %+v", r.Cases[0].Failures)
	}
}

func TestReportsParse(t *testing.T) {
	r := sampleResults()
	r.Cases[1].Failures = []Failure{{Kind: "divergence", Message: "replay 1: DIVERGED: replay diverged at chunk 7\nmore"}}
	r.Cases[1].ReplayCommand = "samsara replay x/rec.zst --from-checkpoint 'a b.ckpt'"
	dir := t.TempDir()
	if err := WriteReports(r, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, b)
	}
	s := doc.Suites[0]
	if s.Tests != 2 || s.Failures != 1 || len(s.Cases) != 2 || s.Cases[0].Failure != nil {
		t.Fatalf("junit suite %+v", s)
	}
	f := s.Cases[1].Failure
	if f == nil || f.Type != "divergence" || f.Message != "replay 1: DIVERGED: replay diverged at chunk 7" || !strings.Contains(f.Text, "reproduce with: samsara replay") {
		t.Fatalf("junit failure %+v", f)
	}
	back, err := ReadResults(filepath.Join(dir, "results.json"))
	if err != nil || len(back.Cases) != 2 || back.Cases[1].RecordRunRatio != 2 {
		t.Fatalf("results.json round trip: %v %+v", err, back)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, want := range []string{"![record/run", "| a/2cpu/parallel | **FAIL** (divergence)", "Reproduce: `samsara replay"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md has no %q:\n%s", want, md)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err := xml.Unmarshal(svg, new(struct{})); err != nil || !strings.Contains(string(svg), "a/2cpu/parallel") {
		t.Fatalf("chart.svg is not XML naming the cases: %v", err)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"/bin/samsara", "replay", "a b", "it's", "--vm=/x.img"})
	if want := `/bin/samsara replay 'a b' 'it'\''s' --vm=/x.img`; got != want {
		t.Fatalf("shellJoin = %s, want %s", got, want)
	}
}

func TestSlots(t *testing.T) {
	s := newSlots(2)
	if n := s.acquire(4); n != 2 { // a job wider than the host takes all
		t.Fatalf("acquire(4) on 2 slots took %d", n)
	}
	done := make(chan bool)
	go func() { s.release(s.acquire(1)); done <- true }()
	time.Sleep(50 * time.Millisecond) // time for a wrong acquire to return
	select {
	case <-done:
		t.Fatal("a job ran while every slot was taken")
	default:
	}
	s.release(2)
	<-done
}
