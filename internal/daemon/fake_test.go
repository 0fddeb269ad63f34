package daemon

import (
	"bytes"
	"encoding/json"
	"errors"

	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine starts fakeJobs that the test drives: no KVM, no child.
type fakeEngine struct {
	// started receives every job as it starts.
	started chan *fakeJob
	// fail makes Start fail.
	fail error
}

func newFakeEngine() *fakeEngine { return &fakeEngine{started: make(chan *fakeJob, 100)} }

func (e *fakeEngine) Start(t Task) (Job, error) {
	if e.fail != nil {
		return nil, e.fail
	}
	j := &fakeJob{task: t, done: make(chan struct{})}
	e.started <- j
	return j, nil
}

// fakeJob is a job that ends when the test says, or when stopped.
type fakeJob struct {
	task Task
	mu   sync.Mutex
	st   ChildStatus
	// stops counts Stop calls.
	stops int
	// stopAs is how Stop ends the job (default: stopped).
	stopAs *ChildFinal
	once   sync.Once
	done   chan struct{}
	final  ChildFinal
}

func (j *fakeJob) Status() ChildStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.st
}

// progress sets the job's progress.
func (j *fakeJob) progress(chunks int64) {
	j.mu.Lock()
	j.st.Chunks, j.st.GuestNanos = chunks, chunks*1000
	j.mu.Unlock()
}

// end ends the job, writing a log file like a recording would.
func (j *fakeJob) end(f ChildFinal) {
	j.once.Do(func() {
		if j.task.Kind == TaskRecord {
			os.WriteFile(j.task.Log, []byte("not a real log"), 0o600)
		}
		j.final = f
		close(j.done)
	})
}

func (j *fakeJob) Stop() {
	j.mu.Lock()
	j.stops++
	f := ChildFinal{Outcome: OutcomeStopped}
	if j.stopAs != nil {
		f = *j.stopAs
	}
	j.mu.Unlock()
	j.end(f)
}

func (j *fakeJob) Kill() { j.end(ChildFinal{Outcome: OutcomeFailed, Error: "killed"}) }

func (j *fakeJob) Wait() ChildFinal {
	<-j.done
	return j.final
}

// env is a daemon with a fake engine serving on a Unix socket.
type env struct {
	t      *testing.T
	d      *Daemon
	eng    *fakeEngine
	c      *Client
	sock   string
	store  string
	images string
	srv    *http.Server
	// ckpt is a checkpoint file under images.
	ckpt string
}

// newEnv starts a daemon with maxVCPUs on a fresh store (or store, when
// given: a restart).
func newEnv(t *testing.T, maxVCPUs int, store string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, eng: newFakeEngine(), sock: filepath.Join(dir, "s.sock"), store: store, images: filepath.Join(dir, "images")}
	if e.store == "" {
		e.store = filepath.Join(dir, "store")
	}
	os.MkdirAll(e.images, 0o700)
	e.ckpt = filepath.Join(e.images, "booted.ckpt")
	os.WriteFile(e.ckpt, []byte("checkpoint"), 0o600)
	d, err := New(Config{Store: e.store, Images: []string{e.images}, MaxVCPUs: maxVCPUs, Engine: e.eng, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	l, err := Listen(e.sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &http.Server{Handler: d.Handler()}
	go e.srv.Serve(l)
	t.Cleanup(func() { e.srv.Close() })
	e.c = NewClient(e.sock)
	return e
}

// create creates a recording from the checkpoint on cpus vCPUs.
func (e *env) create(cpus int, labels map[string]string) *Recording {
	e.t.Helper()
	r, err := e.c.Create(CreateRecording{Labels: labels, Machine: Machine{Checkpoint: e.ckpt, CPUs: cpus, Argv: []string{"race", "100"}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// nextJob returns the next job the engine started.
func (e *env) nextJob() *fakeJob {
	e.t.Helper()
	select {
	case j := <-e.eng.started:
		return j
	case <-time.After(waitBound):
		e.t.Fatalf("no job started within %v", waitBound)
		return nil
	}
}

// noJob checks that no job starts (queued jobs stay queued).
func (e *env) noJob() {
	e.t.Helper()
	select {
	case j := <-e.eng.started:
		e.t.Fatalf("job %s of %s started; want it queued", j.task.Kind, j.task.Log)
	case <-time.After(noJobWait):
	}
}

// waitBound bounds every wait for a fake job's state to reach the API:
// it takes microseconds; 5 s is for a loaded machine.
const waitBound = 5 * time.Second

// noJobWait is how long a test watches for a job that must not start: the
// scheduler starts jobs synchronously in the request, so a job that was
// going to start has started before the request returned; this only
// covers a goroutine that is late.
const noJobWait = 100 * time.Millisecond

// waitState polls recording id until it is in state want.
func (e *env) waitState(id string, want State) *Recording {
	e.t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		r, err := e.c.Get(id)
		if err != nil {
			e.t.Fatal(err)
		}
		if r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("recording %s: state %s after %v, waiting for %s", id, r.State, waitBound, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// raw sends a request with a raw body and returns the status and the
// decoded error message.
func (e *env) raw(method, path, contentType string, body []byte) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.c.HTTP.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er Error
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &er); err != nil || er.Error == "" {
			e.t.Fatalf("%s %s: HTTP %d with a body that is not a JSON error: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, er.Error
}

// apiStatus is the HTTP status of an *APIError, 0 for nil.
func apiStatus(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	return ae.Status
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// contains fails unless s contains want.
func contains(t *testing.T, what, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Errorf("%s: %q does not contain %q", what, s, want)
	}
}
