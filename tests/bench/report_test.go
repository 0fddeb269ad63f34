package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixedReport is a report with made-up numbers: three workloads, samsara on
// 1 and 2 vCPUs, one QEMU recording that failed.
func fixedReport() *benchReport {
	ok := func(s float64) outcome { return outcome{Wall: time.Duration(s * float64(time.Second)), Ran: true} }
	sam := func(run, rec float64) []samsaraResult {
		return []samsaraResult{
			{VCPUs: 1, Run: ok(run), Record: ok(rec), Replay: ok(rec), LogBytes: 700, GuestNanos: 1e6},
			{VCPUs: 2, Run: ok(run), Record: ok(2 * rec), Replay: ok(rec), LogBytes: 900, GuestNanos: 2e6},
		}
	}
	refused := outcome{Wall: 50 * time.Millisecond, Ran: true, Err: "refused: Record/replay feature is not supported for 'smp'"}
	return &benchReport{
		Date:        time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Host:        "2 CPUs, test",
		QEMUVersion: "QEMU emulator version 7.2.0",
		Workloads: []workloadResult{
			{Name: "alpha", Samsara: sam(1, 1.5), QEMU: qemuResult{Plain1: ok(1), Plain2: ok(1.2), Record1: ok(2.5), Replay1: ok(4), LogBytes: 1 << 20, GuestNanos: 2e9, Record2: refused}},
			{Name: "beta", Samsara: sam(2, 2), QEMU: qemuResult{Plain1: ok(1.5), Plain2: ok(1.2), Record1: ok(3), Replay1: ok(5), LogBytes: 2 << 20, GuestNanos: 3e9, Record2: refused}},
			{Name: "gamma|pipe", Samsara: sam(1, 4), QEMU: qemuResult{Plain1: ok(1), Plain2: ok(1.2), Record1: outcome{Ran: true, Err: "guest program exit status 1"}, Record2: refused}},
		},
		QEMUBoot: qemuResult{Plain1: ok(0.8), Plain2: ok(0.9), Record1: ok(1.5), Replay1: ok(2)},
		KVM:      []kvmResult{{VCPUs: 1, Workload: "alpha 1 tiny", Outcome: outcome{Wall: 60 * time.Second, Ran: true, Err: "KVM internal error (emulation failure) at bytes 9b 65 48 c7 (fwait)"}}},
	}
}

func TestOverheadChartSeries(t *testing.T) {
	c := overheadChart(fixedReport())
	want := []string{"samsara 2 vCPUs (serialized)", "samsara 1 vCPU (serialized)", "QEMU rr 1 vCPU (TCG, icount)"}
	if len(c.Series) != len(want) {
		t.Fatalf("series %d, want %d", len(c.Series), len(want))
	}
	for i, s := range c.Series {
		if s.Name != want[i] {
			t.Errorf("series %d = %q, want %q", i, s.Name, want[i])
		}
		if len(s.Values) != 3 {
			t.Errorf("series %q has %d values, want 3", s.Name, len(s.Values))
		}
	}
	// alpha: samsara 2 vCPUs record 3 s / run 1 s; QEMU 2.5 s / 1 s.
	if got := c.Series[0].Values[0]; got != 3 {
		t.Errorf("samsara 2 vCPUs alpha = %v, want 3", got)
	}
	if got := c.Series[2].Values[0]; got != 2.5 {
		t.Errorf("QEMU alpha = %v, want 2.5", got)
	}
	if got := c.Series[2].Values[2]; !math.IsNaN(got) {
		t.Errorf("failed QEMU recording = %v, want NaN", got)
	}
}

// svgDoc is the part of the SVG the test checks.
type svgDoc struct {
	Rects []struct {
		Class  string `xml:"class,attr"`
		Group  string `xml:"data-group,attr"`
		Series string `xml:"data-series,attr"`
		Height string `xml:"height,attr"`
	} `xml:"rect"`
	Texts []struct {
		Class string `xml:"class,attr"`
		Body  string `xml:",chardata"`
	} `xml:"text"`
}

func parseSVG(t *testing.T, s string) svgDoc {
	t.Helper()
	var d svgDoc
	dec := xml.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("SVG is not well-formed XML: %v", err)
	}
	// The whole document must parse, not only its first element.
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG trailing content: %v", err)
		}
	}
	return d
}

func TestRenderSVGOneBarPerWorkloadPerSystem(t *testing.T) {
	tests := []struct {
		name        string
		chart       chart
		wantBars    int
		wantMissing int
	}{
		{"complete", chart{Title: "t", YLabel: "y", Reference: 1, Groups: []string{"a", "b"},
			Series: []series{{Name: "s1", Values: []float64{1, 2}}, {Name: "s2", Values: []float64{3, 0.5}}}}, 4, 0},
		{"missing value", chart{Title: "t", Groups: []string{"a", "b", "c"},
			Series: []series{{Name: "s1", Values: []float64{1, math.NaN(), 2}}}}, 2, 1},
		{"from report", overheadChart(fixedReport()), 3*3 - 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parseSVG(t, renderSVG(tt.chart))
			bars := map[[2]string]int{}
			n := 0
			for _, r := range d.Rects {
				if r.Class != "bar" {
					continue
				}
				n++
				bars[[2]string{r.Group, r.Series}]++
				if h, err := strconv.ParseFloat(r.Height, 64); err != nil || h <= 0 {
					t.Errorf("bar %s/%s height %q", r.Group, r.Series, r.Height)
				}
			}
			if n != tt.wantBars {
				t.Errorf("%d bars, want %d", n, tt.wantBars)
			}
			for k, c := range bars {
				if c != 1 {
					t.Errorf("%d bars for %v, want 1", c, k)
				}
			}
			texts := map[string]int{}
			for _, x := range d.Texts {
				texts[x.Class+":"+x.Body]++
			}
			for _, g := range tt.chart.Groups {
				if texts["group:"+g] != 1 {
					t.Errorf("group label %q missing", g)
				}
			}
			for _, s := range tt.chart.Series {
				if texts["legend:"+s.Name] != 1 {
					t.Errorf("legend entry %q missing", s.Name)
				}
			}
			if texts["missing:n/a"] != tt.wantMissing {
				t.Errorf("%d n/a markers, want %d", texts["missing:n/a"], tt.wantMissing)
			}
			if texts["title:"+tt.chart.Title] != 1 {
				t.Errorf("title missing")
			}
		})
	}
}

func TestRenderMarkdownRows(t *testing.T) {
	md := renderMarkdown(fixedReport())
	var header string
	rows := map[string]int{}
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| workload | VMM |") {
			header = l
			continue
		}
		for _, w := range []string{"alpha", "beta", `gamma\|pipe`} {
			if strings.HasPrefix(l, "| "+w+" | ") {
				rows[w]++
				// Every row has as many cells as the header.
				if got, want := cells(l), cells(header); got != want {
					t.Errorf("row %q: %d cells, header %d", l, got, want)
				}
			}
		}
	}
	if header == "" {
		t.Fatal("no main table header")
	}
	for _, col := range []string{"run", "record", "replay", "log bytes", "log MB/s", "log bytes per guest s", "squash rate"} {
		if !strings.Contains(header, "| "+col+" |") {
			t.Errorf("header lacks column %q: %s", col, header)
		}
	}
	// samsara 1 and 2 vCPUs, QEMU 1 and 2 vCPUs.
	for _, w := range []string{"alpha", "beta"} {
		if rows[w] != 4 {
			t.Errorf("workload %s: %d rows, want 4", w, rows[w])
		}
	}
	for _, want := range []string{
		"n/a (serialized)",
		`refused after 0.05 s: "Record/replay feature is not supported for 'smp'"`,
		"failed: guest program exit status 1",
		"failed after 60.0 s: KVM internal error",
		"1.50 s, matched",
		"4.00 s, same output",
		"2.50x (n/a)",   // alpha: 1.0 s of recording beyond boot, 0.2 s of run: within noise
		"2.00x (2.14x)", // beta: (3-1.5) / (1.5-0.8), both above qemuNoise
		"![Recording overhead per workload](overhead.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

// cells counts a markdown table row's cells (escaped pipes do not split).
func cells(row string) int {
	return strings.Count(strings.ReplaceAll(row, `\|`, ""), "|") - 1
}

func TestWriteReportFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	if err := writeReport(dir, fixedReport()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bench.md", "overhead.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// -rerender reproduces the same files from bench.json.
	md, _ := os.ReadFile(filepath.Join(dir, "bench.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "overhead.svg"))
	os.Remove(filepath.Join(dir, "bench.md"))
	if err := rerender(dir); err != nil {
		t.Fatal(err)
	}
	md2, _ := os.ReadFile(filepath.Join(dir, "bench.md"))
	svg2, _ := os.ReadFile(filepath.Join(dir, "overhead.svg"))
	if string(md) != string(md2) || string(svg) != string(svg2) {
		t.Error("rerender from bench.json differs from the original rendering")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ raw, want float64 }{{0.3, 0.5}, {0.7, 1}, {1.5, 2}, {3, 5}, {7, 10}, {0, 1}} {
		if got := niceStep(tt.raw); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

// The host's native speed-up stands before the parallel figures, and each
// recording's profile is a row of the profile table with the vCPUs' mean
// share per phase.
func TestRenderNativeAndProfiles(t *testing.T) {
	r := fixedReport()
	r.Parallel = true
	r.Native = &nativeSpeedup{Command: "blackscholes THREADS small", One: 2 * time.Second, Two: 1250 * time.Millisecond}
	r.Workloads[0].Samsara[1].RecordProfile = &recordProfile{Wall: 2, VCPUs: []map[string]float64{{"guest": 1, "wait": 1}, {"guest": 1.5, "wait": 0.5}}}
	r.Workloads[0].Samsara[1].ParallelProfile = &recordProfile{Wall: 1, VCPUs: []map[string]float64{{"guest": 0.5, "squashed": 0.25}, {"guest": 0.7, "squashed": 0.05}}}
	out := renderMarkdown(r)
	for _, want := range []string{
		"a **1.60x** speed-up",
		"| alpha tiny | 2 | serialized | 62.5% | 0.0% | 0.0% | 0.0% | 0.0% | 37.5% | 0.0% | 0.0% | 0.0% |",
		"| alpha tiny | 2 | parallel | 60.0% | 0.0% | 0.0% | 0.0% | 15.0% | 0.0% | 0.0% | 0.0% | 0.0% |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if strings.Index(out, "speed-up") > strings.Index(out, "| workload | vCPUs | record --mode parallel |") {
		t.Error("the native speed-up comes after the parallel recorder's table")
	}
	if n := strings.Count(out, "| alpha tiny |"); n != 2 {
		t.Errorf("%d profile rows for alpha, want 2 (beta and gamma have none)", n)
	}
	ok := func(s float64) outcome { return outcome{Wall: time.Duration(s * float64(time.Second)), Ran: true} }
	// A row per vCPU count (issue 18: 4 wherever 2).
	r.SyncHeavy = []workloadResult{{Name: "cvping 8", Samsara: []samsaraResult{
		{VCPUs: 2, Run: ok(10), Record: ok(5), Replay: ok(6), Parallel: ok(40), ParallelReplay: ok(20), Squashes: 3, Chunks: 90},
		{VCPUs: 4, Run: ok(8), Record: ok(16), Replay: ok(12), Parallel: ok(24), ParallelReplay: ok(20), Squashes: 7, Chunks: 120}}}}
	out = renderMarkdown(r)
	for _, row := range []string{
		"| cvping 8 | 2 | 10.00 s | 5.00 s | 0.50x | 6.00 s, matched | 40.00 s | 4.00x | 20.00 s, matched | 3 of 90 |",
		"| cvping 8 | 4 | 8.00 s | 16.00 s | 2.00x | 12.00 s, matched | 24.00 s | 3.00x | 20.00 s, matched | 7 of 120 |",
	} {
		if !strings.Contains(out, row) {
			t.Errorf("no sync-heavy row %q in:\n%s", row, out[strings.Index(out, "Sync-heavy"):])
		}
	}
	r.Native = &nativeSpeedup{Err: "exit status 1"}
	if out := renderMarkdown(r); !strings.Contains(out, "speed-up was not measured: exit status 1") {
		t.Error("a failed native measurement is not reported")
	}
}

// The recorder comparisons run on every vCPU count of two or more.
func TestMultiCPUs(t *testing.T) {
	if got := fmt.Sprint(multiCPUs([]int{1, 2, 4})); got != "[2 4]" {
		t.Errorf("multiCPUs(1,2,4) = %s, want [2 4]", got)
	}
	if got := multiCPUs([]int{1}); len(got) != 0 {
		t.Errorf("multiCPUs(1) = %v, want none", got)
	}
}
