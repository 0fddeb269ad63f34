package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExecArgv: the child's command line for each kind of task, as the
// one-shot CLI takes it.
func TestExecArgv(t *testing.T) {
	e := &ExecEngine{Binary: "samsara"}
	for _, c := range []struct {
		name string
		task Task
		want string
	}{
		{"record from a checkpoint", Task{Kind: TaskRecord, Log: "L", Console: "C", Machine: Machine{Checkpoint: "/i/c", CPUs: 2, Mode: "parallel", Argv: []string{"race", "100"}}},
			"record -o L --cpus 2 --mode parallel --console C --status-fd 3 --from-checkpoint /i/c -- race 100"},
		{"record a cold boot with a disk", Task{Kind: TaskRecord, Log: "L", Console: "C", Machine: Machine{Kernel: "/i/k", Initrd: "/i/r", Disk: "/i/d", CPUs: 1, Memory: "1G", Append: "quiet"}},
			"record -o L --cpus 1 --mem 1G --append quiet --console C --status-fd 3 --kernel /i/k --initrd /i/r --vm /i/d --"},
		{"replay", Task{Kind: TaskReplay, Log: "L", Console: "C", Machine: Machine{Checkpoint: "/i/c", CPUs: 2, Argv: []string{"x"}}},
			"replay L --console C --status-fd 3 --from-checkpoint /i/c"},
	} {
		if got := strings.Join(e.argv(c.task), " "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// fakeSamsara writes a shell script that stands in for the samsara
// binary: it runs body with the status stream on fd 3.
func fakeSamsara(t *testing.T, body string) *ExecEngine {
	t.Helper()
	p := filepath.Join(t.TempDir(), "samsara")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	// grace 300 ms: long enough for sh to run its trap, short enough
	// for a test.
	return &ExecEngine{Binary: p, StopGrace: 300 * time.Millisecond}
}

// execBound bounds a fake child's run: sh starts in milliseconds.
const execBound = 10 * time.Second

func waitFinal(t *testing.T, j Job) ChildFinal {
	t.Helper()
	c := make(chan ChildFinal, 1)
	go func() { c <- j.Wait() }()
	select {
	case f := <-c:
		return f
	case <-time.After(execBound):
		t.Fatalf("the child did not end within %v", execBound)
		return ChildFinal{}
	}
}

// TestExecEngine: the engine reads progress and the final line from the
// child's status stream, reports a child that died without one with its
// exit status and stderr, stops with SIGTERM and kills a child that
// ignores it.
func TestExecEngine(t *testing.T) {
	task := func() Task {
		d := t.TempDir()
		return Task{Kind: TaskRecord, Log: filepath.Join(d, "log"), Console: filepath.Join(d, "console"), Stderr: filepath.Join(d, "stderr"),
			Machine: Machine{Checkpoint: "/c", CPUs: 1}}
	}
	t.Run("status stream", func(t *testing.T) {
		e := fakeSamsara(t, `echo '{"chunks":5,"guest_ns":9}' >&3; echo '{"chunks":6,"guest_ns":10,"final":{"outcome":"finished","exit_status":4}}' >&3`)
		j, err := e.Start(task())
		if err != nil {
			t.Fatal(err)
		}
		if f := waitFinal(t, j); f.Outcome != OutcomeFinished || f.ExitStatus != 4 {
			t.Errorf("final %+v", f)
		}
		if st := j.Status(); st.Chunks != 6 || st.GuestNanos != 10 {
			t.Errorf("last status %+v", st)
		}
	})
	t.Run("died without a final line", func(t *testing.T) {
		e := fakeSamsara(t, `echo "samsara: no such checkpoint" >&2; exit 2`)
		j, err := e.Start(task())
		if err != nil {
			t.Fatal(err)
		}
		f := waitFinal(t, j)
		if f.Outcome != OutcomeFailed || f.ExitStatus != 2 || !strings.Contains(f.Error, "no such checkpoint") {
			t.Errorf("final %+v: want failed, status 2, the stderr", f)
		}
	})
	t.Run("stop", func(t *testing.T) {
		e := fakeSamsara(t, `trap 'echo "{\"chunks\":1,\"final\":{\"outcome\":\"stopped\"}}" >&3; exit 143' TERM; echo '{"chunks":1}' >&3; while :; do sleep 0.05; done`)
		j, err := e.Start(task())
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(execBound)
		for j.Status().Chunks == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // the trap is set once the first line is out
		}
		j.Stop()
		if f := waitFinal(t, j); f.Outcome != OutcomeStopped {
			t.Errorf("final %+v, want stopped", f)
		}
	})
	t.Run("kill after the grace", func(t *testing.T) {
		e := fakeSamsara(t, `trap '' TERM; echo '{"chunks":1}' >&3; while :; do sleep 0.05; done`)
		j, err := e.Start(task())
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(execBound)
		for j.Status().Chunks == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		j.Stop()
		if f := waitFinal(t, j); f.Outcome != OutcomeFailed || !strings.Contains(f.Error, "killed") {
			t.Errorf("final %+v, want failed: killed", f)
		}
	})
}
