package daemon

// Engine runs the VMs of recordings and replays. The daemon declares what
// it needs; ExecEngine (exec.go) runs a child samsara per job, and the API
// tests use a fake.
type Engine interface {
	// Start starts a job; the returned Job runs until it ends on its own
	// or is stopped.
	Start(t Task) (Job, error)
}

// TaskKind is what a job does.
type TaskKind string

const (
	// TaskRecord records Machine into Log.
	TaskRecord TaskKind = "record"
	// TaskReplay replays Log on Machine.
	TaskReplay TaskKind = "replay"
)

// Task is one job for the engine; every path has been checked.
type Task struct {
	Kind TaskKind
	// Machine is the machine (a replay's is its recording's).
	Machine Machine
	// Log is the recording written (record) or read (replay).
	Log string
	// Console receives the guest console output.
	Console string
	// Stderr receives the job's diagnostics.
	Stderr string
}

// Job is a running job.
type Job interface {
	// Status is the last progress line (Final nil while running).
	Status() ChildStatus
	// Stop asks the job to end cleanly: a recording closes its log with
	// the prefix recorded so far.
	Stop()
	// Kill ends the job at once.
	Kill()
	// Wait blocks until the job has ended and says how.
	Wait() ChildFinal
}
