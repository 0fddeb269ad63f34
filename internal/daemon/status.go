package daemon

// The status stream: how a `samsara record` or `samsara replay` child tells
// the daemon how far it has come and how it ended. The child writes one
// JSON object per line to the file descriptor named by its hidden
// --status-fd flag: a progress line once a second, then one line with
// Final set just before it exits. The daemon reads the stream; the child's
// exit status alone cannot tell "stopped, prefix kept" from "failed".

// Outcome names how a child job ended.
type Outcome string

const (
	// OutcomeFinished: the guest powered off and the log is complete.
	OutcomeFinished Outcome = "finished"
	// OutcomeStopped: the recording was stopped by a signal; the log is
	// closed cleanly and holds the chunks recorded so far.
	OutcomeStopped Outcome = "stopped"
	// OutcomeMatched: the replay matched the whole recording.
	OutcomeMatched Outcome = "matched"
	// OutcomeMatchedPrefix: the recording has no end (it was stopped or
	// cut short) and every chunk it holds replayed identically.
	OutcomeMatchedPrefix Outcome = "matched_prefix"
	// OutcomeDiverged: the replay left the recorded execution.
	OutcomeDiverged Outcome = "diverged"
	// OutcomeFailed: anything else went wrong (bad input, KVM error).
	OutcomeFailed Outcome = "failed"
)

// ChildStatus is one line of the status stream.
type ChildStatus struct {
	// Chunks recorded or replayed so far.
	Chunks int64 `json:"chunks"`
	// TotalChunks is the number of chunks to replay (0 when recording).
	TotalChunks int64 `json:"total_chunks,omitempty"`
	// GuestNanos is the guest (virtual) time since the start.
	GuestNanos int64 `json:"guest_ns"`
	// LogBytes is the size of the log written so far (record): header
	// and compressed blocks; the open block is counted once it is
	// compressed, and the file on disk lags behind by its write buffer.
	LogBytes int64 `json:"log_bytes,omitempty"`
	// Final is set on the last line only.
	Final *ChildFinal `json:"final,omitempty"`
}

// ChildFinal is how the child ended.
type ChildFinal struct {
	// Outcome is how the job ended.
	Outcome Outcome `json:"outcome"`
	// ExitStatus is the guest program's exit status (record, replay).
	ExitStatus int `json:"exit_status"`
	// Divergence is set when Outcome is diverged: what differed, as the
	// replay CLI reports it.
	Divergence *Divergence `json:"divergence,omitempty"`
	// Error says what went wrong when Outcome is failed.
	Error string `json:"error,omitempty"`
}

// Divergence is where a replay left the recording (session.DivergenceError).
type Divergence struct {
	// Chunk is the index of the chunk record; VCPU its vCPU.
	Chunk int `json:"chunk"`
	VCPU  int `json:"vcpu"`
	// What differed, what was recorded and what was replayed.
	What string `json:"what"`
	Want string `json:"recorded"`
	Got  string `json:"replayed"`
	// Message is the whole error as `samsara replay` prints it.
	Message string `json:"message"`
}
