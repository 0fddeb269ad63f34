package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// slots bounds the vCPUs of the jobs that run at once: a job of N vCPUs
// takes N slots (all of them if N is more), so the host's CPUs are not
// oversubscribed and the timings stay comparable.
type slots struct {
	mu sync.Mutex
	// cond is signalled when slots are released.
	cond *sync.Cond
	// used and size count slots.
	used, size int
}

func newSlots(n int) *slots {
	if n < 1 {
		n = 1
	}
	s := &slots{size: n}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *slots) acquire(n int) int {
	n = min(n, s.size)
	s.mu.Lock()
	for s.used+n > s.size {
		s.cond.Wait()
	}
	s.used += n
	s.mu.Unlock()
	return n
}

func (s *slots) release(n int) {
	s.mu.Lock()
	s.used -= n
	s.mu.Unlock()
	s.cond.Broadcast()
}

// jobResult is one child samsara process.
type jobResult struct {
	args           []string
	stdout, stderr string
	// status is the exit status (-1 if it did not exit normally).
	status int
	wall   time.Duration
	// maxRSS is the child's peak resident memory in KiB.
	maxRSS int64
	// err is a failure to start it or its timeout.
	err error
}

// quitGrace is how long a timed-out child has to exit after SIGQUIT (the
// Go runtime then prints every goroutine's stack: where samsara was
// stuck) before it is killed; tests/harness_test.go waits as long.
const quitGrace = 10 * time.Second

// exec runs the samsara binary with args, taking vcpus slots, bounded by
// timeout.
func (r *runner) exec(ctx context.Context, vcpus int, timeout time.Duration, args ...string) jobResult {
	n := r.slots.acquire(vcpus)
	defer r.slots.release(n)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.opts.Binary, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = quitGrace
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := jobResult{args: args, stdout: out.String(), stderr: errb.String(), wall: time.Since(start), status: -1}
	if cmd.ProcessState != nil {
		res.status = cmd.ProcessState.ExitCode()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.maxRSS = ru.Maxrss // KiB on Linux (getrusage(2))
		}
	}
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.err = fmt.Errorf("samsara %s: no result after %v (killed; the goroutine dump is in its stderr)", strings.Join(args, " "), timeout)
	case err != nil && !errors.As(err, &ee):
		res.err = fmt.Errorf("samsara %s: %w", strings.Join(args, " "), err)
	}
	return res
}

// failure describes a job that did not exit 0, for a failure message.
func (j jobResult) failure(what string) string {
	if j.err != nil {
		return fmt.Sprintf("%s: %v\n%s", what, j.err, quitDump(j.stderr))
	}
	return fmt.Sprintf("%s exited %d\n%s", what, j.status, lastLines(j.stderr, tailLines))
}

// tailLines is how much of a child's output a failure message quotes: a
// samsara error and its context (a stall report lists each vCPU on a
// line; 2-8 vCPUs) fit; the whole output is in DIR/failed/CASE.
const tailLines = 20

// dumpLines bounds how much of a timed-out child's SIGQUIT dump a failure
// message quotes: samsara runs about 10-30 goroutines (one per vCPU, the
// watchdogs, the devices), 5-15 lines each; the end of the dump is the
// registers of the host thread that took the signal, which say nothing.
const dumpLines = 400

// quitDump is what a failure message quotes of a timed-out child's stderr:
// its own last messages and the goroutine dump from its start ("SIGQUIT:
// quit"), where samsara was stuck. Without a dump, the last lines.
func quitDump(stderr string) string {
	i := strings.Index(stderr, "SIGQUIT: quit")
	if i < 0 {
		return lastLines(stderr, tailLines)
	}
	lines := strings.Split(stderr[i:], "\n")
	if len(lines) > dumpLines {
		lines = append(lines[:dumpLines], fmt.Sprintf("[%d more lines]", len(lines)-dumpLines))
	}
	return lastLines(stderr[:i], tailLines) + "\n" + strings.Join(lines, "\n")
}

// lastLines keeps the end of a child's stderr for a message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
