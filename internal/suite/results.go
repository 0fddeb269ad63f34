package suite

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Results is what the suite measured: DIR/results.json, and the baseline
// a later run compares against (--baseline).
type Results struct {
	// Suite is the suite's name.
	Suite string `json:"suite"`
	// Started is when the run began.
	Started time.Time `json:"started"`
	// WallSeconds is the whole run's duration.
	WallSeconds float64 `json:"wall_seconds"`
	// HostCPUs is the host's CPU count (figures from different hosts do
	// not compare).
	HostCPUs int `json:"host_cpus"`
	// Cases holds one entry per workload x vCPUs x recorder.
	Cases []*Case `json:"cases"`
}

// Case is one test case: a workload on a vCPU count with one recorder.
type Case struct {
	// Name is "WORKLOAD/NcpuS/MODE", the JUnit test case name.
	Name     string   `json:"name"`
	Workload string   `json:"workload"`
	VCPUs    int      `json:"vcpus"`
	Mode     string   `json:"mode"`
	Command  []string `json:"command"`
	// RunSeconds is `samsara run`'s wall time (shared by the workload's
	// modes on this vCPU count); RecordSeconds the recording's.
	RunSeconds    float64 `json:"run_seconds"`
	RecordSeconds float64 `json:"record_seconds"`
	// ReplaySeconds holds each replay's wall time.
	ReplaySeconds []float64 `json:"replay_seconds"`
	// RecordRunRatio is RecordSeconds / RunSeconds; ReplayRecordRatio
	// the mean replay time / RecordSeconds.
	RecordRunRatio    float64 `json:"record_run_ratio"`
	ReplayRecordRatio float64 `json:"replay_record_ratio"`
	// LogBytes is the recording's size on disk; GuestSeconds the guest
	// time it covers; LogRate = LogBytes / GuestSeconds (bytes per guest
	// second, as inspect reports it).
	LogBytes     int64   `json:"log_bytes"`
	GuestSeconds float64 `json:"guest_seconds"`
	LogRate      float64 `json:"log_rate"`
	// Chunks is the number of chunks; SquashRate the parallel recorder's
	// squashes / (commits + squashes), 0 for the serialized recorder.
	Chunks     uint64  `json:"chunks"`
	SquashRate float64 `json:"squash_rate"`
	// Peak resident memory of each child, in KiB (getrusage ru_maxrss).
	RunMaxRSSKiB    int64 `json:"run_max_rss_kib"`
	RecordMaxRSSKiB int64 `json:"record_max_rss_kib"`
	ReplayMaxRSSKiB int64 `json:"replay_max_rss_kib"`
	// Thresholds are the workload's, for the baseline comparison.
	Thresholds Thresholds `json:"thresholds"`
	// Failures lists what failed; empty: the case passed.
	Failures []Failure `json:"failures,omitempty"`
	// Kept is the folder with the failed case's recording, console and
	// checkpoint (DIR/failed/CASE); ReplayCommand reproduces the replay.
	Kept          string `json:"kept,omitempty"`
	ReplayCommand string `json:"replay_command,omitempty"`
}

// Failure is one reason a case failed.
type Failure struct {
	// Figure names the regressed figure (record_run_ratio, log_rate) of a
	// baseline failure; empty for other failures.
	Figure string `json:"figure,omitempty"`
	// Kind is "error" (a job failed: bad exit, timeout, wrong output),
	// "divergence" (a replay did not match) or "regression".
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Failed counts the failed cases.
func (r *Results) Failed() int {
	n := 0
	for _, c := range r.Cases {
		if len(c.Failures) > 0 {
			n++
		}
	}
	return n
}

// ReadResults reads a results.json (a baseline).
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", path, err)
	}
	return &r, nil
}

// WriteJSON writes r to path.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
