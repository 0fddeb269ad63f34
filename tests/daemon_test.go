package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// Its chunks come while the guest starts the program; the loop itself
	// is one long chunk of user code where no counter can preempt it (the
	// emulated SVM host: there the whole recording made 11 chunks once
	// init stopped reading its command in 480 exits, and "more than 2
	// while recording" was never seen).
	waitFor(t, resumeTimeout, "the long recording's chunks and log to grow", func() (bool, string) {
		r, _ = p.client.Get(long.ID)
		return r.Progress.Chunks > 0 && r.Progress.LogBytes > 0 && r.State == daemon.StateRecording, fmt.Sprintf("%s %+v", r.State, r.Progress)
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
	// The client commands, with the one-shot CLI's exit codes.
	checkClientCommands(t, p2, ckpt, long.ID, short.ID, third.ID)

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

// checkClientCommands runs ps, replay, inspect, record and stop with
// --daemon against a running daemon.
func checkClientCommands(t *testing.T, p *daemonProc, ckpt, stopped, finished, interrupted string) {
	t.Helper()
	ps := samsara(t, resumeTimeout, "ps", "--daemon", p.socket, "--label", "test="+t.Name())
	for _, want := range []string{stopped + " ", finished + " ", interrupted + " ", "stopped", "finished", "interrupted", "matched_prefix"} {
		if ps.status != 0 || !strings.Contains(ps.stdout, want) {
			t.Errorf("samsara ps: status %d, no %q in\n%s%s", ps.status, want, ps.stdout, ps.stderr)
		}
	}
	rp := samsara(t, resumeTimeout, "replay", "--daemon", p.socket, stopped)
	if rp.status != 0 || !strings.Contains(rp.stderr, "matched the recorded prefix") {
		t.Errorf("samsara replay --daemon of the stopped recording: status %d\n%s", rp.status, rp.stderr)
	}
	in := samsara(t, resumeTimeout, "inspect", "--daemon", p.socket, finished)
	if in.status != 0 || !strings.Contains(in.stdout, "end:         exit status 0") {
		t.Errorf("samsara inspect --daemon: status %d\n%s%s", in.status, in.stdout, in.stderr)
	}
	// record --daemon streams the console, exits with the program's
	// status and downloads a log the one-shot replay accepts.
	out := filepath.Join(t.TempDir(), "rec.zst")
	rec := samsara(t, resumeTimeout, "record", "--daemon", p.socket, "--cpus", "2", "--from-checkpoint", ckpt, "-o", out, "--label", "test=client", "--", "race", "100000")
	if rec.status != 0 {
		t.Fatalf("samsara record --daemon: status %d\n%s", rec.status, rec.stderr)
	}
	checkProgramOutput(t, []string{"race"}, rec.stdout)
	if r := samsara(t, resumeTimeout, "replay", out, "--from-checkpoint", ckpt); r.status != 0 || !strings.Contains(r.stderr, "replay matched the recording") {
		t.Errorf("one-shot replay of the downloaded log: status %d\n%s", r.status, r.stderr)
	}
	if r := samsara(t, resumeTimeout, "stop", "--daemon", p.socket, "nosuch"); r.status != 2 || !strings.Contains(r.stderr, `no recording "nosuch"`) {
		t.Errorf("samsara stop of an unknown id: status %d, want 2\n%s", r.status, r.stderr)
	}
	if r := samsara(t, resumeTimeout, "record", "--daemon", p.socket, "--cpus", "0", "--from-checkpoint", ckpt); r.status != 2 || !strings.Contains(r.stderr, "HTTP 400") {
		t.Errorf("samsara record --daemon --cpus 0: status %d, want 2 with the daemon's 400\n%s", r.status, r.stderr)
	}
}

// TestRecordStopSignal: a one-shot `samsara record` stopped by SIGINT
// (Ctrl-C) exits 130 with a closed log whose prefix replays, and replay
// says it matched a prefix.
func TestRecordStopSignal(t *testing.T) {
	ckpt := bootedCheckpoint(t, 2)
	out := filepath.Join(t.TempDir(), "stopped.zst")
	status := filepath.Join(t.TempDir(), "status")
	sf, err := os.Create(status)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	// race 1000000000 runs ~20 s; it is stopped once it has chunks.
	cmd := exec.Command(samsaraBin, "record", "--cpus", "2", "--from-checkpoint", ckpt, "-o", out, "--status-fd", "3", "--", "race", "1000000000")
	cmd.ExtraFiles = []*os.File{sf}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, resumeTimeout, "the recording to report chunks on its status stream", func() (bool, string) {
		b, _ := os.ReadFile(status)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var st daemon.ChildStatus
		json.Unmarshal([]byte(lines[len(lines)-1]), &st)
		return st.Chunks > 0, string(b)
	})
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// stopBound: the log is closed at once and the process exits at most
	// 1 s later (cmd/samsara/stop.go); 30 s is for a loaded host.
	const stopBound = 30 * time.Second
	select {
	case <-done:
	case <-time.After(stopBound):
		cmd.Process.Kill()
		t.Fatalf("record did not exit within %v of SIGINT\n%s", stopBound, stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit status %d after SIGINT, want 130\n%s", code, stderr.String())
	}
	b, _ := os.ReadFile(status)
	if !strings.Contains(string(b), `"outcome":"stopped"`) {
		t.Errorf("status stream does not end stopped:\n%s", b)
	}
	r := samsara(t, resumeTimeout, "replay", out, "--from-checkpoint", ckpt)
	if r.status != 0 || !strings.Contains(r.stderr, "matched the recorded prefix") {
		t.Errorf("replay of the stopped recording: status %d\n%s", r.status, r.stderr)
	}
}
