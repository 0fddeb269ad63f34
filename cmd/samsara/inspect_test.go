package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// writeParallelLog writes a small synthetic parallel recording: chunks on
// two vCPUs, the recorder's counters, the final digest and the end.
func writeParallelLog(t *testing.T) string {
	t.Helper()
	h := &log.Header{
		Config:         log.VMConfig{CPUs: 2, MemoryBytes: 256 << 20},
		Platform:       log.PlatformPVM,
		Counter:        "pvm-branches",
		Mode:           log.ModeParallel,
		Tracker:        "private-pagemap",
		SamsaraVersion: "test",
		Created:        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	path := filepath.Join(t.TempDir(), "rec.zst")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := log.NewWriter(f, h)
	if err != nil {
		t.Fatal(err)
	}
	rs := &log.RecorderStats{
		Tracker: "private-pagemap",
		VCPUs: []log.RecorderVCPUStats{
			{Commits: 900, Squashes: 100, ExclusiveRuns: 2, CommittedWork: 1_000_000, ReexecutedWork: 50_000},
			{Commits: 100, Squashes: 0, ExclusiveRuns: 0, CommittedWork: 0, ReexecutedWork: 0},
		},
	}
	rs.ChunkSizes[log.SizeBucket(1)] = 100   // 1 (an empty chunk)
	rs.ChunkSizes[log.SizeBucket(3)] = 400   // 2..3
	rs.ChunkSizes[log.SizeBucket(600)] = 500 // 512..1023
	recs := []log.Record{
		&log.Chunk{VCPU: 0, Reason: log.ReasonBudget, Squashes: 1},
		&log.Chunk{VCPU: 1, Reason: log.ReasonHalt},
		rs,
		&log.Digest{VCPUs: make([][32]byte, 2)},
		&log.End{Reason: "poweroff", GuestNanos: 1e9},
	}
	for _, r := range recs {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspectParallelRecorder(t *testing.T) {
	s, err := log.SummarizeFile(writeParallelLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printSummary(&out, s)
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		"parallel recorder: tracker private-pagemap, work unit = guest kernel instructions + 1 per chunk\n",
		"  vcpu      commits   squashes  squash%  exclusive  re-executed\n",
		"  0             900        100    10.0%          2         5.0%\n",
		"  1             100          0     0.0%          0            -\n",
		"  all          1000        100     9.1%          2         5.0%\n",
		"chunk sizes: 1000 committed chunks, work units -> chunks\n",
		"  1                               100    10.0%\n",
		"  2..3                            400    40.0%\n",
		"  512..1023                       500    50.0%\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inspect output lacks %q", want)
		}
	}
	if strings.Contains(got, "4..7") {
		t.Error("inspect prints empty chunk-size buckets")
	}

	// A serialized recording has no recorder stats and no such section.
	s.Recorder = nil
	out.Reset()
	printSummary(&out, s)
	if strings.Contains(out.String(), "parallel recorder:") {
		t.Error("parallel recorder section printed without the record")
	}
}

func TestInspectJSONHasRecorderStats(t *testing.T) {
	path := writeParallelLog(t)
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = wr
	cmd := newInspectCmd()
	cmd.SetArgs([]string{path, "--json"})
	runErr := cmd.Execute()
	os.Stdout = stdout
	wr.Close()
	b, err := io.ReadAll(r)
	if err != nil || runErr != nil {
		t.Fatalf("inspect --json: %v, %v", runErr, err)
	}
	var s struct {
		Recorder *log.RecorderStats `json:"recorder"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if s.Recorder == nil || s.Recorder.Tracker != "private-pagemap" || len(s.Recorder.VCPUs) != 2 ||
		s.Recorder.VCPUs[0].Squashes != 100 || s.Recorder.ChunkSizes.Count() != 1000 {
		t.Errorf("recorder in JSON = %+v", s.Recorder)
	}
	if !bytes.Contains(b, []byte(`"min": 512,`)) {
		t.Errorf("chunk sizes not listed by range in JSON:\n%s", b)
	}
}
