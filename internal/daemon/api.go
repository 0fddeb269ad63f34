// Package daemon is samsara's API service: an HTTP/JSON API on a Unix
// socket to create, watch, stop, list, inspect and replay recordings
// (api/openapi.yaml documents it), a FIFO scheduler that runs jobs while
// their vCPUs fit, and a store with one folder per recording. The VMs run
// in an Engine: in production a child `samsara record`/`samsara replay`
// per job (exec.go), so a crashing VM never takes the daemon down; in the
// API tests, a fake.
package daemon

import (
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// State is where a recording or replay is in its life.
type State string

// Recording states. queued -> booting -> recording -> finished | stopped |
// failed; a daemon restart turns queued, booting and recording into
// interrupted.
const (
	StateQueued      State = "queued"
	StateBooting     State = "booting"   // the child runs, no chunk yet
	StateRecording   State = "recording" // chunks are being recorded
	StateFinished    State = "finished"  // the guest powered off; the log is complete
	StateStopped     State = "stopped"   // stopped by the API; the log holds a prefix
	StateFailed      State = "failed"
	StateInterrupted State = "interrupted" // the daemon died while it ran; the log holds its readable prefix
)

// Replay states: queued -> running -> one of the outcomes (matched,
// matched_prefix, diverged, failed), or interrupted by a restart.
const (
	StateRunning State = "running"
)

// terminal reports whether a job in state s has ended.
func (s State) terminal() bool {
	switch s {
	case StateQueued, StateBooting, StateRecording, StateRunning:
		return false
	}
	return true
}

// Machine is the machine a recording runs on. Paths must lie under one of
// the daemon's --images directories.
type Machine struct {
	// Checkpoint is a booted checkpoint to start from (the normal case);
	// without it Kernel and Initrd cold-boot the guest.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Kernel is an uncompressed ELF vmlinux.
	Kernel string `json:"kernel,omitempty"`
	// Initrd is the initramfs.
	Initrd string `json:"initrd,omitempty"`
	// Disk is a raw disk image; never written.
	Disk string `json:"disk,omitempty"`
	// CPUs is the number of vCPUs, 1 to --max-vcpus.
	CPUs int `json:"cpus"`
	// Memory is the guest memory, e.g. "256M" (default 256M).
	Memory string `json:"memory,omitempty"`
	// Mode is the recorder: "serialized" (default) or "parallel".
	Mode string `json:"mode,omitempty"`
	// Append is extra kernel command-line arguments (cold boot).
	Append string `json:"append,omitempty"`
	// Argv is the program the guest's init runs (empty: the reference workload).
	Argv []string `json:"argv,omitempty"`
}

// CreateRecording is the body of POST /v1/recordings.
type CreateRecording struct {
	// Name is a free-form name for people.
	Name string `json:"name,omitempty"`
	// Labels are key=value tags to filter lists by.
	Labels map[string]string `json:"labels,omitempty"`
	// Machine is what to run.
	Machine Machine `json:"machine"`
}

// Progress is how far a job has come.
type Progress struct {
	// Chunks recorded or replayed.
	Chunks int64 `json:"chunks"`
	// TotalChunks is the number of chunks a replay has to replay.
	TotalChunks int64 `json:"total_chunks,omitempty"`
	// GuestNanos is guest (virtual) time since the start.
	GuestNanos int64 `json:"guest_ns"`
	// WallNanos is wall time since the job started.
	WallNanos int64 `json:"wall_ns"`
	// LogBytes is the size of the log on disk (recordings).
	LogBytes int64 `json:"log_bytes,omitempty"`
}

// Recording is one recording as the API shows it.
type Recording struct {
	// ID names the recording in the API and its folder in the store.
	ID string `json:"id"`
	// Name and Labels are the creator's (CreateRecording).
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Machine is what runs, its paths resolved.
	Machine Machine `json:"machine"`
	// State is where the recording is in its life.
	State State `json:"state"`
	// Created, Started and Ended are when it was accepted, left the
	// queue and ended (UTC).
	Created time.Time  `json:"created"`
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Progress is the last known progress (final once ended).
	Progress Progress `json:"progress"`
	// ExitStatus is the guest program's exit status, once finished.
	ExitStatus *int `json:"exit_status,omitempty"`
	// Error says why the recording failed or was interrupted.
	Error string `json:"error,omitempty"`
	// Replays of this recording, oldest first.
	Replays []*Replay `json:"replays,omitempty"`
	// Summary is `samsara inspect --json` of the log (GET of one
	// recording that has ended; of the intact prefix when it is cut short).
	Summary *log.Summary `json:"summary,omitempty"`
}

// Replay is one replay of a recording.
type Replay struct {
	// ID names the replay under its recording.
	ID string `json:"id"`
	// State is queued, running or the result.
	State State `json:"state"`
	// Created, Started and Ended are as a Recording's.
	Created time.Time  `json:"created"`
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Progress is the last known progress.
	Progress Progress `json:"progress"`
	// Divergence is where the replay left the recording (state diverged).
	Divergence *Divergence `json:"divergence,omitempty"`
	// Error says why the replay failed.
	Error string `json:"error,omitempty"`
}

// Replay outcomes as states.
const (
	StateMatched       State = "matched"
	StateMatchedPrefix State = "matched_prefix"
	StateDiverged      State = "diverged"
)

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	// Error says what is wrong.
	Error string `json:"error"`
}

// Health is the body of GET /v1/health.
type Health struct {
	// Status is "ok" while the daemon serves.
	Status string `json:"status"`
	// Version is samsara's version.
	Version string `json:"version"`
	// MaxVCPUs is the scheduler's budget; UsedVCPUs what running jobs hold.
	MaxVCPUs  int `json:"max_vcpus"`
	UsedVCPUs int `json:"used_vcpus"`
	// Queued is the number of jobs waiting for vCPUs.
	Queued int `json:"queued"`
}
