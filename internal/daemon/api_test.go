package daemon

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndpoints walks every endpoint through a recording's life: create,
// list and filter, get, console, log, stop, replay, delete, health and
// metrics.
func TestEndpoints(t *testing.T) {
	e := newEnv(t, 4, "")
	r := e.create(2, map[string]string{"suite": "parsec"})
	if r.State != StateQueued && r.State != StateBooting {
		t.Fatalf("new recording is %s", r.State)
	}
	j := e.nextJob()
	if j.task.Kind != TaskRecord || j.task.Machine.CPUs != 2 || j.task.Machine.Checkpoint != e.ckpt {
		t.Fatalf("engine got %+v", j.task)
	}
	e.waitState(r.ID, StateBooting)
	j.progress(7)
	got := e.waitState(r.ID, StateRecording)
	if got.Progress.Chunks != 7 || got.Progress.GuestNanos != 7000 {
		t.Errorf("progress %+v, want 7 chunks, 7000 ns", got.Progress)
	}

	// list, with filters
	other := e.create(1, nil)
	oj := e.nextJob()
	for _, c := range []struct {
		state  State
		labels []string
		want   []string
	}{
		{"", nil, []string{r.ID, other.ID}},
		{StateRecording, nil, []string{r.ID}},
		{"", []string{"suite=parsec"}, []string{r.ID}},
		{"", []string{"suite=other"}, nil},
		{StateFinished, nil, nil},
	} {
		rs, err := e.c.List(c.state, c.labels...)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, x := range rs {
			ids = append(ids, x.ID)
		}
		if strings.Join(ids, ",") != strings.Join(c.want, ",") {
			t.Errorf("list state=%q labels=%v: %v, want %v", c.state, c.labels, ids, c.want)
		}
	}

	// console: written by the job, streamed while it runs
	os.WriteFile(j.task.Console, []byte("hello\n"), 0o600)
	var console bytes.Buffer
	if err := e.c.Stream("/v1/recordings/"+r.ID+"/console", &console); err != nil || console.String() != "hello\n" {
		t.Errorf("console: %q, %v", console.String(), err)
	}
	follow := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		e.c.Stream("/v1/recordings/"+r.ID+"/console?follow=true", &b)
		follow <- b.String()
	}()
	time.Sleep(2 * consolePoll) // the stream is following before more output comes
	f, _ := os.OpenFile(j.task.Console, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("world\n")
	f.Close()

	// stop: the job is stopped and the recording ends stopped
	if _, err := e.c.Stop(r.ID); err != nil {
		t.Fatal(err)
	}
	stopped := e.waitState(r.ID, StateStopped)
	if j.stops != 1 || stopped.Ended == nil {
		t.Errorf("stop: %d Stop calls, ended %v", j.stops, stopped.Ended)
	}
	select {
	case s := <-follow:
		if s != "hello\nworld\n" {
			t.Errorf("followed console: %q, want both lines", s)
		}
	case <-time.After(waitBound):
		t.Fatalf("followed console did not end within %v of the recording's end", waitBound)
	}
	if _, err := e.c.Stop(r.ID); apiStatus(t, err) != http.StatusConflict {
		t.Errorf("second stop: %v, want 409", err)
	}

	// log download
	var lg bytes.Buffer
	if err := e.c.Stream("/v1/recordings/"+r.ID+"/log", &lg); err != nil || lg.String() != "not a real log" {
		t.Errorf("log: %q, %v", lg.String(), err)
	}

	// replay of the stopped recording: the fake reports a matched prefix
	rp, err := e.c.Replay(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	rj := e.nextJob()
	if rj.task.Kind != TaskReplay || rj.task.Log != j.task.Log {
		t.Fatalf("replay task %+v, want a replay of %s", rj.task, j.task.Log)
	}
	os.WriteFile(rj.task.Console, []byte("replayed\n"), 0o600)
	rj.end(ChildFinal{Outcome: OutcomeMatchedPrefix})
	waitReplay(t, e, r.ID, rp.ID, StateMatchedPrefix)
	var rc bytes.Buffer
	if err := e.c.Stream("/v1/recordings/"+r.ID+"/replays/"+rp.ID+"/console?follow=true", &rc); err != nil || rc.String() != "replayed\n" {
		t.Errorf("replay console: %q, %v", rc.String(), err)
	}
	rp2, _ := e.c.Replay(r.ID)
	e.nextJob().end(ChildFinal{Outcome: OutcomeDiverged, Divergence: &Divergence{Chunk: 3, What: "rip", Message: "diverged at chunk 3"}})
	d := waitReplay(t, e, r.ID, rp2.ID, StateDiverged)
	if d.Divergence == nil || d.Divergence.Chunk != 3 {
		t.Errorf("diverged replay: %+v", d.Divergence)
	}

	// the other one finishes with the guest's exit status
	oj.end(ChildFinal{Outcome: OutcomeFinished, ExitStatus: 3})
	fin := e.waitState(other.ID, StateFinished)
	if fin.ExitStatus == nil || *fin.ExitStatus != 3 {
		t.Errorf("exit status %v, want 3", fin.ExitStatus)
	}

	// health and metrics
	var h Health
	if err := e.c.Do("GET", "/v1/health", nil, &h); err != nil || h.Status != "ok" || h.MaxVCPUs != 4 || h.UsedVCPUs != 0 {
		t.Errorf("health %+v, %v", h, err)
	}
	var m bytes.Buffer
	if err := e.c.Stream("/metrics", &m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`samsara_recordings{state="stopped"} 1`, `samsara_recordings{state="finished"} 1`,
		`samsara_replays_total{result="matched_prefix"} 1`, `samsara_replays_total{result="diverged"} 1`, `samsara_recorded_chunks_total 7`, "samsara_vcpus_used 0"} {
		contains(t, "metrics", m.String(), want)
	}

	// delete
	if err := e.c.Do("DELETE", "/v1/recordings/"+r.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(r.ID); apiStatus(t, err) != http.StatusNotFound {
		t.Errorf("get after delete: %v, want 404", err)
	}
	if _, err := os.Stat(filepath.Dir(j.task.Log)); !os.IsNotExist(err) {
		t.Errorf("the recording's folder is still there: %v", err)
	}
}

// waitReplay polls a replay until it is in state want.
func waitReplay(t *testing.T, e *env, id, rid string, want State) *Replay {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		rp, err := e.c.GetReplay(id, rid)
		if err != nil {
			t.Fatal(err)
		}
		if rp.State == want {
			return rp
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay %s of %s: %s after %v, waiting for %s", rid, id, rp.State, waitBound, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQueueing: jobs run while their vCPUs fit, the rest wait in FIFO
// order (a small job does not pass a large one), a stopped queued job
// leaves the queue, and a running job cannot be deleted.
func TestQueueing(t *testing.T) {
	e := newEnv(t, 4, "")
	a := e.create(3, nil)
	ja := e.nextJob()
	b := e.create(2, nil) // 3+2 > 4: waits
	c := e.create(1, nil) // would fit, but b is ahead of it
	e.noJob()
	for _, id := range []string{b.ID, c.ID} {
		if r, _ := e.c.Get(id); r.State != StateQueued {
			t.Errorf("%s is %s, want queued", id, r.State)
		}
	}
	var h Health
	e.c.Do("GET", "/v1/health", nil, &h)
	if h.UsedVCPUs != 3 || h.Queued != 2 {
		t.Errorf("health %+v: want 3 vCPUs used, 2 queued", h)
	}
	if err := e.c.Do("DELETE", "/v1/recordings/"+a.ID, nil, nil); apiStatus(t, err) != http.StatusConflict {
		t.Errorf("delete of a running recording: %v, want 409", err)
	}
	ja.end(ChildFinal{Outcome: OutcomeFinished})
	jb, jc := e.nextJob(), e.nextJob() // 2+1 fit in 4: both start, in order
	if filepath.Base(filepath.Dir(jb.task.Log)) != b.ID || filepath.Base(filepath.Dir(jc.task.Log)) != c.ID {
		t.Errorf("started %s then %s, want %s then %s", jb.task.Log, jc.task.Log, b.ID, c.ID)
	}
	d := e.create(2, nil) // 3 used: waits
	e.noJob()
	if _, err := e.c.Stop(d.ID); err != nil {
		t.Fatal(err)
	}
	if r := e.waitState(d.ID, StateStopped); r.Started != nil {
		t.Errorf("a stopped queued recording says it started at %v", r.Started)
	}
	jb.end(ChildFinal{Outcome: OutcomeFinished})
	jc.end(ChildFinal{Outcome: OutcomeFinished})
	e.noJob() // d left the queue
}

// TestSchedulerFIFO is the scheduler's bookkeeping alone.
func TestSchedulerFIFO(t *testing.T) {
	s := scheduler{max: 4}
	jobs := []*fakeSched{{2}, {3}, {1}, {4}}
	var started []int
	add := func(js []schedJob) {
		for _, x := range js {
			started = append(started, x.vcpus())
		}
	}
	for _, x := range jobs {
		add(s.submit(x))
	}
	if len(started) != 1 || s.used != 2 {
		t.Fatalf("started %v, used %d: want [2], 2", started, s.used)
	}
	add(s.done(jobs[0])) // 3 and then 1 fit
	if got := started; len(got) != 3 || got[1] != 3 || got[2] != 1 {
		t.Fatalf("started %v, want [2 3 1]", got)
	}
	add(s.done(jobs[1]))
	if len(started) != 3 {
		t.Fatalf("4 started with 1 vCPU held: %v", started)
	}
	add(s.done(jobs[2]))
	if len(started) != 4 || s.used != 4 {
		t.Fatalf("started %v, used %d", started, s.used)
	}
}

type fakeSched struct{ n int }

func (f *fakeSched) vcpus() int { return f.n }

// TestEngineFailure: a job the engine cannot start fails with the reason
// and frees its vCPUs for the next.
func TestEngineFailure(t *testing.T) {
	e := newEnv(t, 2, "")
	e.eng.fail = os.ErrPermission
	r := e.create(2, nil)
	got := e.waitState(r.ID, StateFailed)
	contains(t, "error", got.Error, "permission denied")
	e.eng.fail = nil
	r2 := e.create(2, nil)
	e.nextJob()
	e.waitState(r2.ID, StateBooting)
}

// TestSocketMode: the socket is created 0600; a second daemon on a live
// socket is refused, a stale socket replaced, and a file that is not a
// socket left alone.
func TestSocketMode(t *testing.T) {
	e := newEnv(t, 1, "")
	fi, err := os.Stat(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(e.sock, -1); err == nil {
		t.Error("a second Listen on a live socket succeeded")
	}
	// --group: owned by the group, which may connect (0660). Our own
	// group is one we may chown to without privileges.
	grouped := filepath.Join(t.TempDir(), "g.sock")
	lg, err := Listen(grouped, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	if fi, err := os.Stat(grouped); err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(os.Getgid()) {
		t.Errorf("socket with a group: %v %v, want mode 0660 and gid %d", fi.Mode(), err, os.Getgid())
	}
	file := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := Listen(file, -1); err == nil {
		t.Error("Listen on a regular file succeeded")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("Listen removed or changed a regular file at the socket path")
	}
	// A stale socket (its daemon died: the file stays, nothing listens)
	// is replaced.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l0, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l0.(*net.UnixListener).SetUnlinkOnClose(false)
	l0.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket is not there: %v", err)
	}
	l, err := Listen(stale, -1)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	l.Close()
}

// TestShutdown: Shutdown stops the running jobs cleanly and waits for
// them; a replay it ends is interrupted, not failed.
func TestShutdown(t *testing.T) {
	e := newEnv(t, 4, "")
	done := e.create(2, nil)
	e.nextJob().end(ChildFinal{Outcome: OutcomeFinished})
	e.waitState(done.ID, StateFinished)
	rp, err := e.c.Replay(done.ID)
	if err != nil {
		t.Fatal(err)
	}
	jr := e.nextJob()
	r := e.create(2, nil)
	j := e.nextJob()
	e.waitState(r.ID, StateBooting)
	jr.stopAs = &ChildFinal{Outcome: OutcomeFailed, Error: "signal: terminated"} // what a replay child says
	if err := e.d.Shutdown(waitBound); err != nil {
		t.Fatal(err)
	}
	if j.stops != 1 || jr.stops != 1 {
		t.Errorf("%d and %d Stop calls, want 1 each", j.stops, jr.stops)
	}
	if got, _ := e.c.Get(r.ID); got.State != StateStopped {
		t.Errorf("after shutdown: %s, want stopped", got.State)
	}
	if got, _ := e.c.GetReplay(done.ID, rp.ID); got.State != StateInterrupted {
		t.Errorf("replay after shutdown: %s, want interrupted", got.State)
	}
	if _, err := e.c.Create(CreateRecording{Machine: Machine{Checkpoint: e.ckpt, CPUs: 1}}); apiStatus(t, err) != http.StatusConflict {
		t.Errorf("create during shutdown: %v, want 409", err)
	}
}
