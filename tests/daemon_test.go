package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/daemon"
)

// daemonProc is a `samsara daemon` started by a test.
type daemonProc struct {
	cmd    *exec.Cmd
	socket string
	client *daemon.Client
	stderr *os.File
}

// daemonStartBound bounds the daemon's start: it opens its store and
// listens, milliseconds of work.
const daemonStartBound = 10 * time.Second

// startDaemon starts the daemon on store with the checkpoint folder as
// its only --images folder and waits until it answers.
func startDaemon(t *testing.T, dir, store, images string) *daemonProc {
	t.Helper()
	p := &daemonProc{socket: filepath.Join(dir, "samsara.sock")}
	var err error
	if p.stderr, err = os.CreateTemp(dir, "daemon-*.stderr"); err != nil {
		t.Fatal(err)
	}
	// --max-vcpus 4: two 2-vCPU recordings at once, as the issue asks,
	// even on a 2-CPU host (overcommitted, which costs time, not
	// correctness).
	p.cmd = exec.Command(samsaraBin, "daemon", "--socket", p.socket, "--store", store, "--images", images, "--max-vcpus", "4")
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
	})
	p.client = daemon.NewClient(p.socket)
	waitFor(t, daemonStartBound, "the daemon to answer GET /v1/health on "+p.socket, func() (bool, string) {
		var h daemon.Health
		err := p.client.Do("GET", "/v1/health", nil, &h)
		return err == nil, fmt.Sprint(err)
	})
	return p
}

// log returns the daemon's stderr for failure messages.
func (p *daemonProc) log() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return tail(string(b))
}

// waitFor polls cond until it holds or bound passes, then fails naming
// what it waited for and the last state cond reported.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", bound, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRecording waits until recording id is in one of the states.
func waitRecording(t *testing.T, p *daemonProc, id string, bound time.Duration, states ...daemon.State) *daemon.Recording {
	t.Helper()
	var r *daemon.Recording
	waitFor(t, bound, fmt.Sprintf("recording %s to be %v", id, states), func() (bool, string) {
		var err error
		if r, err = p.client.Get(id); err != nil {
			return false, err.Error()
		}
		for _, s := range states {
			if r.State == s {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s, %d chunks, error %q\ndaemon:\n%s", r.State, r.Progress.Chunks, r.Error, p.log())
	})
	return r
}

// replayVia replays recording id through the daemon and waits for the
// result.
func replayVia(t *testing.T, p *daemonProc, id string) *daemon.Replay {
	t.Helper()
	rp, err := p.client.Replay(id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, resumeTimeout, fmt.Sprintf("replay %s of %s to end", rp.ID, id), func() (bool, string) {
		if rp, err = p.client.GetReplay(id, rp.ID); err != nil {
			return false, err.Error()
		}
		return rp.State != daemon.StateQueued && rp.State != daemon.StateRunning, string(rp.State)
	})
	return rp
}

// TestDaemonEndToEnd is issue 13's end-to-end test: two recordings on 2
// vCPUs each at once, progress watched, one stopped mid-way, both
// replayed (the stopped one as a prefix, and it says so), then the daemon
// SIGKILLed with a third recording running and restarted: the two are
// listed unchanged and the third is interrupted with a prefix that
// replays.
func TestDaemonEndToEnd(t *testing.T) {
	ckpt := bootedCheckpoint(t, 2)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	p := startDaemon(t, dir, store, filepath.Dir(ckpt))
	machine := func(argv ...string) daemon.CreateRecording {
		return daemon.CreateRecording{Machine: daemon.Machine{Checkpoint: ckpt, CPUs: 2, Argv: argv}, Labels: map[string]string{"test": t.Name()}}
	}
	// race 1000000000 runs ~20 s here (it is stopped long before);
	// race 100000 well under a second (recordPrograms uses it).
	long, err := p.client.Create(machine("race", "1000000000"))
	if err != nil {
		t.Fatal(err)
	}
	short, err := p.client.Create(machine("race", "100000"))
	if err != nil {
		t.Fatal(err)
	}
	// Both run at once: 2+2 vCPUs fit in --max-vcpus 4.
	var h daemon.Health
	if err := p.client.Do("GET", "/v1/health", nil, &h); err != nil || h.Queued != 0 {
		t.Fatalf("health %+v, %v: want nothing queued", h, err)
	}
	// Watch the long one's progress until it records chunks.
	r := waitRecording(t, p, long.ID, resumeTimeout, daemon.StateRecording)
	// Its chunks come while the guest boots the program; the loop itself
	// is one long chunk of user code.
	waitFor(t, resumeTimeout, "the long recording's chunks and log to grow", func() (bool, string) {
		r, _ = p.client.Get(long.ID)
		return r.Progress.Chunks > 2 && r.Progress.LogBytes > 0 && r.State == daemon.StateRecording, fmt.Sprintf("%s %+v", r.State, r.Progress)
	})
	if _, err := p.client.Stop(long.ID); err != nil {
		t.Fatal(err)
	}
	// stopBound: the child closes its log at once on SIGTERM and exits
	// after at most its 1 s wait for the recorder (cmd/samsara/stop.go).
	const stopBound = 30 * time.Second
	stopped := waitRecording(t, p, long.ID, stopBound, daemon.StateStopped)
	fin := waitRecording(t, p, short.ID, resumeTimeout, daemon.StateFinished)
	if fin.ExitStatus == nil || *fin.ExitStatus != 0 {
		t.Errorf("short recording exit status %v, want 0", fin.ExitStatus)
	}
	if stopped.Summary == nil || stopped.Summary.End != nil || stopped.Summary.Stats.Records == 0 {
		t.Fatalf("stopped recording's summary %+v: want records and no end", stopped.Summary)
	}
	if fin.Summary == nil || fin.Summary.End == nil || !fin.Summary.Complete {
		t.Fatalf("finished recording's summary %+v: want a complete log", fin.Summary)
	}

	// Replay both.
	if rp := replayVia(t, p, long.ID); rp.State != daemon.StateMatchedPrefix {
		t.Errorf("replay of the stopped recording: %s %q, want matched_prefix", rp.State, rp.Error)
	}
	if rp := replayVia(t, p, short.ID); rp.State != daemon.StateMatched {
		t.Errorf("replay of the finished recording: %s %q, want matched", rp.State, rp.Error)
	}
	before, err := p.client.List("", "test="+t.Name())
	if err != nil {
		t.Fatal(err)
	}

	// A third recording runs when the daemon is SIGKILLed.
	third, err := p.client.Create(machine("race", "1000000000"))
	if err != nil {
		t.Fatal(err)
	}
	waitRecording(t, p, third.ID, resumeTimeout, daemon.StateRecording)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	p2 := startDaemon(t, dir, store, filepath.Dir(ckpt))
	after, err := p2.client.List("", "test="+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 {
		t.Fatalf("%d recordings after the restart, want 3", len(after))
	}
	b, _ := json.Marshal(before)
	a, _ := json.Marshal(after[:2])
	if string(a) != string(b) {
		t.Errorf("recordings changed across SIGKILL and restart:\nbefore %s\nafter  %s", b, a)
	}
	if after[2].ID != third.ID || after[2].State != daemon.StateInterrupted {
		t.Fatalf("third recording after the restart: %s %s, want %s interrupted", after[2].ID, after[2].State, third.ID)
	}
	// Its child was told to stop when the daemon died (Pdeathsig) and
	// closed its log: the prefix replays.
	if rp := replayVia(t, p2, third.ID); rp.State != daemon.StateMatchedPrefix {
		t.Errorf("replay of the interrupted recording: %s %q, want matched_prefix\ndaemon:\n%s", rp.State, rp.Error, p2.log())
	}
	// The API socket is the owner's only.
	if fi, err := os.Stat(p2.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v, %v: want mode 0600", fi.Mode(), err)
	}
	// A graceful stop exits 0.
	p2.cmd.Process.Signal(syscall.SIGTERM)
	if err := p2.cmd.Wait(); err != nil {
		t.Errorf("daemon after SIGTERM: %v\n%s", err, p2.log())
	}
}
