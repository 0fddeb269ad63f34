package daemon

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/log"
)

// Config configures a daemon.
type Config struct {
	// Store is the store folder.
	Store string
	// Images are the folders machine files must lie in.
	Images []string
	// MaxVCPUs is the scheduler's budget.
	MaxVCPUs int
	// Engine runs the jobs.
	Engine Engine
	// Version is reported by the health endpoint.
	Version string
	// Logger receives the daemon's events.
	Logger *zap.Logger
}

// Daemon is the service behind the API.
type Daemon struct {
	// cfg is what New was given.
	cfg Config
	// store holds the recordings' folders.
	store *Store
	// images are the --images folders, absolute with symlinks resolved.
	images []string
	// log receives the daemon's events (not per request).
	log *zap.Logger
	// met is the Prometheus registry and counters.
	met *metrics

	mu sync.Mutex
	// recs holds every recording by id.
	recs map[string]*Recording
	// jobs holds the queued and running jobs by recording or replay id.
	jobs map[string]*job
	// sched is the vCPU budget and queue.
	sched scheduler
	// summaries caches the log summary of ended recordings by id: their
	// logs do not change, and summarizing reads the whole log.
	summaries map[string]*log.Summary
	// closing is set by Shutdown: no new jobs start.
	closing bool
	// running counts jobs whose goroutine has not finished.
	running sync.WaitGroup
}

// job is a queued or running recording or replay.
type job struct {
	// rec is the recording (of a replay: the one replayed).
	rec *Recording
	// rp is the replay, nil for a recording.
	rp *Replay
	// cpus is what the job holds while it runs.
	cpus int
	// eng is the engine's job once started, nil while queued.
	eng Job
	// started is when it started.
	started time.Time
	// stopRequested is set by the stop endpoint.
	stopRequested bool
}

func (j *job) vcpus() int { return j.cpus }

// New opens the store and returns a daemon; recordings that were running
// when a previous daemon died are marked interrupted.
func New(cfg Config) (*Daemon, error) {
	if cfg.MaxVCPUs < 1 {
		return nil, fmt.Errorf("max vCPUs %d: want at least 1", cfg.MaxVCPUs)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	images, err := resolveImages(cfg.Images)
	if err != nil {
		return nil, err
	}
	st, recs, err := OpenStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, store: st, images: images, log: cfg.Logger.Named("daemon"),
		recs: make(map[string]*Recording), jobs: make(map[string]*job), summaries: make(map[string]*log.Summary), sched: scheduler{max: cfg.MaxVCPUs}}
	for _, r := range recs {
		d.recs[r.ID] = r
	}
	d.met = newMetrics(d)
	return d, nil
}

// errNotFound, errConflict and errBadRequest map to 404, 409 and 400.
var (
	errNotFound = errors.New("not found")
	errConflict = errors.New("conflict")
)

// create accepts a validated recording and queues it.
func (d *Daemon) create(req CreateRecording) (*Recording, error) {
	id, err := d.store.Create()
	if err != nil {
		return nil, err
	}
	r := &Recording{ID: id, Name: req.Name, Labels: req.Labels, Machine: req.Machine, State: StateQueued, Created: time.Now().UTC()}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		d.store.Delete(id)
		return nil, fmt.Errorf("%w: the daemon is shutting down", errConflict)
	}
	if err := d.store.Save(r); err != nil {
		d.store.Delete(id)
		return nil, err
	}
	d.recs[id] = r
	d.submitLocked(&job{rec: r, cpus: r.Machine.CPUs})
	return copyRecording(r), nil
}

// lookupLocked returns recording id, or a not-found error naming it.
// Preconditions: d.mu must be held.
func (d *Daemon) lookupLocked(id string) (*Recording, error) {
	r, ok := d.recs[id]
	if !ok {
		return nil, fmt.Errorf("%w: no recording %q", errNotFound, id)
	}
	return r, nil
}

// replay queues a replay of recording id.
func (d *Daemon) replay(id string) (*Replay, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookupLocked(id)
	if err != nil {
		return nil, err
	}
	switch r.State {
	case StateFinished, StateStopped, StateInterrupted:
	default:
		return nil, fmt.Errorf("%w: recording %s is %s; only finished, stopped or interrupted recordings replay", errConflict, id, r.State)
	}
	if d.closing {
		return nil, fmt.Errorf("%w: the daemon is shutting down", errConflict)
	}
	rp := &Replay{ID: newID(), State: StateQueued, Created: time.Now().UTC()}
	r.Replays = append(r.Replays, rp)
	if err := d.store.Save(r); err != nil {
		r.Replays = r.Replays[:len(r.Replays)-1]
		return nil, err
	}
	d.submitLocked(&job{rec: r, rp: rp, cpus: r.Machine.CPUs})
	cp := *rp
	return &cp, nil
}

// submitLocked queues j and starts what fits.
// Preconditions: d.mu must be held.
func (d *Daemon) submitLocked(j *job) {
	d.jobs[j.id()] = j
	d.startLocked(d.sched.submit(j))
}

func (j *job) id() string {
	if j.rp != nil {
		return j.rp.ID
	}
	return j.rec.ID
}

// startLocked starts the jobs the scheduler released.
// Preconditions: d.mu must be held.
func (d *Daemon) startLocked(js []schedJob) {
	for _, sj := range js {
		j := sj.(*job)
		t := Task{Kind: TaskRecord, Machine: j.rec.Machine, Log: d.store.LogPath(j.rec.ID),
			Console: d.store.ConsolePath(j.rec.ID), Stderr: d.store.Dir(j.rec.ID) + "/record.stderr"}
		if j.rp != nil {
			t.Kind, t.Console, t.Stderr = TaskReplay, d.store.ReplayConsolePath(j.rec.ID, j.rp.ID), d.store.Dir(j.rec.ID)+"/replay-"+j.rp.ID+".stderr"
		}
		now := time.Now().UTC()
		j.started = now
		eng, err := d.cfg.Engine.Start(t)
		if err != nil {
			d.endLocked(j, ChildFinal{Outcome: OutcomeFailed, Error: err.Error()}, ChildStatus{})
			d.startLocked(d.sched.done(j)) // endLocked frees only started jobs
			continue
		}
		j.eng = eng
		d.log.Info("job started", zap.String("kind", string(t.Kind)), zap.String("recording", j.rec.ID), zap.String("job", j.id()), zap.Int("vcpus", j.cpus))
		if j.rp != nil {
			j.rp.State, j.rp.Started = StateRunning, &now
		} else {
			j.rec.State, j.rec.Started = StateBooting, &now
		}
		d.saveLocked(j.rec)
		d.running.Add(1)
		go d.wait(j)
	}
}

// wait waits for a started job to end and records how.
func (d *Daemon) wait(j *job) {
	defer d.running.Done()
	final := j.eng.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endLocked(j, final, j.eng.Status())
}

// endLocked records the end of a job, frees its vCPUs and starts what
// now fits.
// Preconditions: d.mu must be held.
func (d *Daemon) endLocked(j *job, f ChildFinal, last ChildStatus) {
	now := time.Now().UTC()
	if j.rp != nil {
		rp := j.rp
		rp.Ended = &now
		rp.Progress = d.progress(j, last)
		switch f.Outcome {
		case OutcomeMatched:
			rp.State = StateMatched
		case OutcomeMatchedPrefix:
			rp.State = StateMatchedPrefix
		case OutcomeDiverged:
			rp.State, rp.Divergence = StateDiverged, f.Divergence
		default:
			rp.State, rp.Error = StateFailed, f.Error
			if d.closing {
				// Shutdown's SIGTERM ends a replay without a result.
				rp.State, rp.Error = StateInterrupted, "the daemon shut down while the replay ran"
			}
		}
		d.met.replayEnded(rp.State)
	} else {
		r := j.rec
		r.Ended = &now
		r.Progress = d.progress(j, last)
		switch f.Outcome {
		case OutcomeFinished:
			r.State = StateFinished
			st := f.ExitStatus
			r.ExitStatus = &st
		case OutcomeStopped:
			r.State = StateStopped
		default:
			r.State, r.Error = StateFailed, f.Error
		}
		d.met.recordingEnded(r, d.store.LogPath(r.ID))
	}
	d.log.Info("job ended", zap.String("recording", j.rec.ID), zap.String("job", j.id()), zap.String("outcome", string(f.Outcome)), zap.String("error", f.Error))
	d.saveLocked(j.rec)
	delete(d.jobs, j.id())
	if j.eng != nil {
		d.startLocked(d.sched.done(j))
	}
}

// saveLocked saves r, logging a failure (the in-memory state stays
// authoritative until the next save).
// Preconditions: d.mu must be held.
func (d *Daemon) saveLocked(r *Recording) {
	if err := d.store.Save(r); err != nil {
		d.log.Error("save recording", zap.String("id", r.ID), zap.Error(err))
	}
}

// progress is a job's progress from its last status line.
func (d *Daemon) progress(j *job, st ChildStatus) Progress {
	p := Progress{Chunks: st.Chunks, TotalChunks: st.TotalChunks, GuestNanos: st.GuestNanos}
	if !j.started.IsZero() {
		p.WallNanos = int64(time.Since(j.started))
	}
	if j.rp == nil {
		p.LogBytes = st.LogBytes
		if fi, err := os.Stat(d.store.LogPath(j.rec.ID)); err == nil && fi.Size() > p.LogBytes {
			p.LogBytes = fi.Size()
		}
	}
	return p
}

// refreshLocked brings the progress (and booting -> recording) of the
// running jobs up to date.
// Preconditions: d.mu must be held.
func (d *Daemon) refreshLocked() {
	for _, j := range d.jobs {
		if j.eng == nil {
			continue
		}
		st := j.eng.Status()
		p := d.progress(j, st)
		if j.rp != nil {
			j.rp.Progress = p
			continue
		}
		d.met.chunksSeen(j.rec, st.Chunks)
		j.rec.Progress = p
		if j.rec.State == StateBooting && st.Chunks > 0 {
			j.rec.State = StateRecording
			d.saveLocked(j.rec)
		}
	}
}

// list returns the recordings that match the filter, oldest first.
func (d *Daemon) list(state State, labels map[string]string) []*Recording {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refreshLocked()
	var out []*Recording
	for _, r := range d.recs {
		if state != "" && r.State != state {
			continue
		}
		if !hasLabels(r, labels) {
			continue
		}
		out = append(out, copyRecording(r))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func hasLabels(r *Recording, want map[string]string) bool {
	for k, v := range want {
		if got, ok := r.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// get returns one recording, with the summary of its log once it ended.
func (d *Daemon) get(id string) (*Recording, error) {
	d.mu.Lock()
	d.refreshLocked()
	r, err := d.lookupLocked(id)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	c := copyRecording(r)
	c.Summary = d.summaries[id]
	_, running := d.jobs[id]
	d.mu.Unlock()
	if c.Summary == nil && c.State.terminal() && !running {
		// Summarize outside the lock: it reads the whole log. A cut
		// log gives the summary of its intact prefix.
		if s, _ := log.SummarizeFile(d.store.LogPath(id)); s != nil {
			c.Summary = s
			d.mu.Lock()
			if _, ok := d.recs[id]; ok {
				d.summaries[id] = s
			}
			d.mu.Unlock()
		}
	}
	return c, nil
}

// getReplay returns one replay.
func (d *Daemon) getReplay(id, rid string) (*Replay, error) {
	r, err := d.get(id)
	if err != nil {
		return nil, err
	}
	for _, rp := range r.Replays {
		if rp.ID == rid {
			return rp, nil
		}
	}
	return nil, fmt.Errorf("%w: recording %s has no replay %q", errNotFound, id, rid)
}

// stop stops a queued or running recording.
func (d *Daemon) stop(id string) (*Recording, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookupLocked(id)
	if err != nil {
		return nil, err
	}
	j, ok := d.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: recording %s has already ended (%s)", errConflict, id, r.State)
	}
	if j.eng == nil {
		// Still queued: it never ran, so it leaves the queue as stopped
		// with an empty log.
		_, start := d.sched.remove(j)
		d.endLocked(j, ChildFinal{Outcome: OutcomeStopped}, ChildStatus{})
		d.startLocked(start)
		return copyRecording(r), nil
	}
	j.stopRequested = true
	j.eng.Stop()
	return copyRecording(r), nil
}

// remove deletes a recording that is not queued or running.
func (d *Daemon) remove(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookupLocked(id)
	if err != nil {
		return err
	}
	for _, j := range d.jobs {
		if j.rec == r {
			return fmt.Errorf("%w: recording %s has a queued or running job; stop it first", errConflict, id)
		}
	}
	if err := d.store.Delete(id); err != nil {
		return err
	}
	delete(d.recs, id)
	delete(d.summaries, id)
	return nil
}

// health reports the scheduler's state.
func (d *Daemon) health() Health {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Health{Status: "ok", Version: d.cfg.Version, MaxVCPUs: d.sched.max, UsedVCPUs: d.sched.used, Queued: len(d.sched.queue)}
}

// jobRunning reports whether the recording or replay with this id is
// queued or running: a console stream follows it until it ends.
func (d *Daemon) jobRunning(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.jobs[id]
	return ok
}

// Shutdown stops every running job cleanly, drops the queued ones, and
// waits for the children to exit or until timeout passes.
func (d *Daemon) Shutdown(timeout time.Duration) error {
	d.mu.Lock()
	d.closing = true
	for _, j := range d.jobs {
		if j.eng != nil {
			j.eng.Stop()
		}
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("shutdown: jobs still running after %v", timeout)
	}
}

// copyRecording is a deep enough copy of r to hand out without the lock.
func copyRecording(r *Recording) *Recording {
	c := *r
	c.Replays = make([]*Replay, len(r.Replays))
	for i, rp := range r.Replays {
		cp := *rp
		c.Replays[i] = &cp
	}
	return &c
}
