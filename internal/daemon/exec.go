package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ExecEngine runs each job as a child process of the samsara binary
// (`samsara record ...`, `samsara replay ...`): a VM that crashes takes
// only its child down, and the recording code stays in one place.
type ExecEngine struct {
	// Binary is the samsara executable (os.Executable()).
	Binary string
	// StopGrace is how long a stopped child may take to close its log
	// before it is killed.
	StopGrace time.Duration
}

// DefaultStopGrace bounds a clean stop before the child is killed. A
// stopped `samsara record` closes its log at once and exits at the latest
// 1 s later (cmd/samsara/stop.go, stopExitWait); a replay exits when its
// machine is torn down. 30 s is that with ample room for a host whose
// CPUs are all busy with other guests, not a typical time.
const DefaultStopGrace = 30 * time.Second

// statusFD is the child's descriptor of the status stream: the first of
// exec.Cmd.ExtraFiles.
const statusFD = 3

// argv is the child's command line for t.
func (e *ExecEngine) argv(t Task) []string {
	m := t.Machine
	var a []string
	switch t.Kind {
	case TaskRecord:
		a = []string{"record", "-o", t.Log, "--cpus", strconv.Itoa(m.CPUs)}
		if m.Memory != "" {
			a = append(a, "--mem", m.Memory)
		}
		if m.Mode != "" {
			a = append(a, "--mode", m.Mode)
		}
		if m.Append != "" {
			a = append(a, "--append", m.Append)
		}
	case TaskReplay:
		a = []string{"replay", t.Log}
	}
	a = append(a, "--console", t.Console, "--status-fd", strconv.Itoa(statusFD))
	if m.Checkpoint != "" {
		a = append(a, "--from-checkpoint", m.Checkpoint)
	} else {
		a = append(a, "--kernel", m.Kernel, "--initrd", m.Initrd)
	}
	if m.Disk != "" {
		a = append(a, "--vm", m.Disk)
	}
	if t.Kind == TaskRecord {
		a = append(a, "--")
		a = append(a, m.Argv...)
	}
	return a
}

// Start is Engine's.
func (e *ExecEngine) Start(t Task) (Job, error) {
	stderr, err := os.Create(t.Stderr)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.Binary, e.argv(t)...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = stderr, stderr, []*os.File{pw}
	// Setpgid: a Ctrl-C at the daemon's terminal reaches the daemon only,
	// which stops its jobs itself. Pdeathsig: a daemon killed outright
	// stops its children the clean way, so their logs keep their prefix.
	// (The kernel sends it when the OS thread that forked exits; Go keeps
	// its threads for the process's life unless a goroutine exits locked
	// to one, which the daemon's goroutines never do.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", t.Kind, err)
	}
	pw.Close()
	j := &execJob{cmd: cmd, stderrPath: t.Stderr, grace: e.StopGrace, done: make(chan struct{})}
	if j.grace == 0 {
		j.grace = DefaultStopGrace
	}
	go j.read(pr)
	return j, nil
}

// execJob is one child.
type execJob struct {
	// cmd is the child.
	cmd *exec.Cmd
	// stderrPath is the child's stderr file, quoted when it fails.
	stderrPath string
	// grace is how long Stop waits before Kill.
	grace time.Duration
	// done is closed when the child has exited and its stream is read.
	done chan struct{}

	mu sync.Mutex
	// last is the last status line read.
	last ChildStatus
	// final is how the child ended, set before done closes.
	final ChildFinal
	// stopping is set once Stop was called.
	stopping bool
}

// read follows the status stream until the child closes it, then reaps
// the child.
func (j *execJob) read(pr *os.File) {
	defer close(j.done)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var st ChildStatus
		if json.Unmarshal(sc.Bytes(), &st) != nil {
			continue
		}
		j.mu.Lock()
		j.last = st
		j.mu.Unlock()
	}
	pr.Close()
	werr := j.cmd.Wait()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.last.Final != nil {
		j.final = *j.last.Final
		return
	}
	// No final line: the child failed before its machine ran (bad flag,
	// unreadable file) or died (a signal, a crash): say so with the end
	// of its stderr.
	j.final = ChildFinal{Outcome: OutcomeFailed, Error: fmt.Sprintf("%s: %v: %s", j.cmd.Args[1], werr, stderrTail(j.stderrPath))}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		j.final.ExitStatus = ee.ExitCode()
	}
}

// stderrTailBytes is how much of a failed child's stderr goes into the
// error: its last lines, where Go and samsara put the reason.
const stderrTailBytes = 2000

func stderrTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > stderrTailBytes {
		b = b[len(b)-stderrTailBytes:]
	}
	return strings.TrimSpace(string(b))
}

func (j *execJob) Status() ChildStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// Stop sends SIGTERM (record ends its log cleanly on it) and kills the
// child if it has not exited after the grace period.
func (j *execJob) Stop() {
	j.mu.Lock()
	already := j.stopping
	j.stopping = true
	j.mu.Unlock()
	if already {
		return
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		select {
		case <-j.done:
		case <-time.After(j.grace):
			j.Kill()
		}
	}()
}

func (j *execJob) Kill() { j.cmd.Process.Kill() }

func (j *execJob) Wait() ChildFinal {
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.final
}
