package tests

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/suite"
)

// suiteTimeout bounds one `samsara suite run` of the short suite: 6
// workloads x (run, 2 records, 2 inspects, 2 replays) plus the test's
// extra case, one at a time on a 2-CPU host (each job takes both CPUs),
// 2-3 minutes under PVM here; every job has its own 3-minute bound.
const suiteTimeout = 15 * time.Minute

// junitDoc is the part of JUnit XML a CI system reads, parsed on its own
// (not with internal/suite's types, so a change there cannot hide a
// broken document).
type junitDoc struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d junitDoc
	if err := xml.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s does not parse as JUnit XML: %v\n%s", path, err, tail(string(b)))
	}
	if len(d.Suites) != 1 {
		t.Fatalf("%s: %d test suites, want 1", path, len(d.Suites))
	}
	return d
}

// TestSuite is issue 17's CI suite end to end, in one run of the short
// suite (suites/short.yaml: the workloads of guest-images/workloads but
// streamcluster, tiny, 2 vCPUs, both recorders, one replay; about 2.5
// minutes here) with one case added that
// expects the wrong output: the JUnit XML must list every case, exactly
// the added one failed, with its recording kept and a replay command that
// reproduces it (the replay matches: the recording itself is good). The
// baseline checks compare that run's results.json (suite compare, no
// rerun): against figures made 2x better every case fails naming the
// figure; against itself nothing regresses.
func TestSuite(t *testing.T) {
	kernel, initrd := requireGuest(t)
	bootedCheckpoint(t, 2) // the suite shares the harness's checkpoint cache
	short, err := os.ReadFile("../suites/short.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	suiteFile := filepath.Join(dir, "short-plus-wrong.yaml")
	wrong := "  - name: wrong-expect\n    command: [blackscholes, \"2\", tiny]\n    modes: [serialized]\n    expect: 'blackscholes: .* FAILED-ON-PURPOSE'\n"
	if err := os.WriteFile(suiteFile, append(short, wrong...), 0o644); err != nil {
		t.Fatal(err)
	}
	// A baseline whose one case is far worse than any run: read and
	// compared (suite run --baseline), it fails nothing.
	worse := writeJSON(t, filepath.Join(dir, "worse.json"), map[string]any{"suite": "short", "cases": []any{
		map[string]any{"name": "blackscholes/2cpu/serialized", "run_seconds": 1, "record_run_ratio": 1e6, "log_rate": 1e12}}})
	out := filepath.Join(dir, "out")
	r := samsara(t, suiteTimeout, "suite", "run", suiteFile, "-o", out, "--kernel", kernel, "--initrd", initrd,
		"--checkpoint-cache", cacheDir(), "--baseline", worse)
	t.Logf("suite run took %.0fs:\n%s", r.elapsed.Seconds(), r.stdout)
	if r.status != 1 {
		t.Fatalf("suite run exited %d, want 1 (one case fails on purpose)\nstdout:\n%s\nstderr:\n%s", r.status, tail(r.stdout), tail(r.stderr))
	}

	want := []string{"wrong-expect/2cpu/serialized"}
	s, err := suite.Load("../suites/short.yaml", initrd)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Workloads {
		for _, n := range w.VCPUs {
			for _, m := range w.Modes {
				want = append(want, fmt.Sprintf("%s/%dcpu/%s", w.Name, n, m))
			}
		}
	}
	if len(want) < 1+2*5 {
		t.Fatalf("suites/short.yaml has %d cases; want both recorders of at least 5 workloads", len(want)-1)
	}
	doc := readJUnit(t, filepath.Join(out, "junit.xml"))
	var got, failed []string
	for _, c := range doc.Suites[0].Cases {
		got = append(got, c.Name)
		if c.Failure != nil {
			failed = append(failed, c.Name)
			if c.Name != want[0] {
				t.Errorf("%s failed: %s\n%s", c.Name, c.Failure.Message, c.Failure.Text)
			}
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("junit.xml cases\n%v\nwant\n%v", got, want)
	}
	if len(failed) != 1 || doc.Suites[0].Failures != 1 {
		t.Fatalf("failed cases %v (failures=%d), want exactly wrong-expect/2cpu/serialized", failed, doc.Suites[0].Failures)
	}
	checkKeptFailure(t, out)
	checkBaselines(t, out, dir)
	for _, f := range []string{"report.md", "chart.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (want a non-empty file)", f, err)
		}
	}
}

// checkKeptFailure: the failed case's folder holds its recording, its
// consoles and replay.sh, and replay.sh replays it (matched).
func checkKeptFailure(t *testing.T, out string) {
	t.Helper()
	kept := filepath.Join(out, "failed", "wrong-expect_2cpu_serialized")
	for _, f := range []string{"rec.zst", "boot.ckpt", "record-console.txt", "failure.txt", "replay.sh"} {
		if _, err := os.Stat(filepath.Join(kept, f)); err != nil {
			t.Fatalf("the failed case's %s was not kept: %v", f, err)
		}
	}
	doc := readJUnit(t, filepath.Join(out, "junit.xml"))
	for _, c := range doc.Suites[0].Cases {
		if c.Failure != nil && !strings.Contains(c.Failure.Text, "reproduce with: "+samsaraBin+" replay "+kept) {
			t.Fatalf("the failure names no reproducing command:\n%s", c.Failure.Text)
		}
	}
	cmd := exec.Command("sh", filepath.Join(kept, "replay.sh"))
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "replay matched") {
		t.Fatalf("replay.sh: %v\n%s", err, tail(string(b)))
	}
}

// checkBaselines compares the run's results against a copy with every
// record/run ratio and log rate halved (every passed case must fail,
// naming the figure), and against its own passed cases (all pass).
func checkBaselines(t *testing.T, out, dir string) {
	t.Helper()
	var res map[string]any
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	var passed []any
	for _, c := range res["cases"].([]any) {
		if _, failed := c.(map[string]any)["failures"]; !failed {
			passed = append(passed, c)
		}
	}
	res["cases"] = passed
	own := writeJSON(t, filepath.Join(dir, "own.json"), res)
	if r := samsara(t, time.Minute, "suite", "compare", own, own); r.status != 0 {
		t.Fatalf("suite compare against its own figures exited %d:\n%s%s", r.status, r.stdout, r.stderr)
	}
	for _, c := range passed {
		m := c.(map[string]any)
		m["record_run_ratio"] = m["record_run_ratio"].(float64) / 2
		m["log_rate"] = m["log_rate"].(float64) / 2
	}
	better := writeJSON(t, filepath.Join(dir, "better.json"), res)
	cmp := filepath.Join(dir, "cmp")
	if r := samsara(t, time.Minute, "suite", "compare", own, better, "-o", cmp); r.status != 1 {
		t.Fatalf("suite compare against a 2x better baseline exited %d, want 1:\n%s%s", r.status, r.stdout, r.stderr)
	}
	doc := readJUnit(t, filepath.Join(cmp, "junit.xml"))
	for _, c := range doc.Suites[0].Cases {
		if c.Failure == nil || c.Failure.Type != "regression" ||
			!strings.Contains(c.Failure.Text, "record_run_ratio regressed") || !strings.Contains(c.Failure.Text, "log_rate regressed") {
			t.Errorf("%s against the 2x better baseline: %+v, want regressions of record_run_ratio and log_rate", c.Name, c.Failure)
		}
	}
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
