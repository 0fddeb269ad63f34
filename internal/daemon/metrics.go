package daemon

// The Prometheus metrics of GET /metrics. Counters are bumped where jobs
// end or report progress; the per-state gauges are computed at scrape
// time from the daemon's state. Chunks per second is
// rate(samsara_recorded_chunks_total[1m]); the squash rate of the
// parallel recorder is rate(samsara_parallel_squashes_total) /
// (rate(samsara_parallel_commits_total) + rate(samsara_parallel_squashes_total)).

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/samsara-vmm/samsara/internal/log"
)

// metrics holds the daemon's collectors.
type metrics struct {
	reg *prometheus.Registry
	// chunks counts chunks recorded, from the children's progress.
	chunks prometheus.Counter
	// logBytes counts the bytes of the logs of ended recordings.
	logBytes prometheus.Counter
	// commits and squashes are the parallel recorder's, per ended recording.
	commits, squashes prometheus.Counter
	// replays counts ended replays by result.
	replays *prometheus.CounterVec
	// seen is the chunk count already added to chunks, per recording id.
	// Guarded by the daemon's mu (every caller holds it).
	seen map[string]int64
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		chunks:   prometheus.NewCounter(prometheus.CounterOpts{Name: "samsara_recorded_chunks_total", Help: "Chunks recorded by this daemon's jobs."}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "samsara_log_bytes_total", Help: "Bytes of the logs of recordings that ended."}),
		commits:  prometheus.NewCounter(prometheus.CounterOpts{Name: "samsara_parallel_commits_total", Help: "Chunks the parallel recorder committed (ended recordings)."}),
		squashes: prometheus.NewCounter(prometheus.CounterOpts{Name: "samsara_parallel_squashes_total", Help: "Chunks the parallel recorder squashed (ended recordings)."}),
		replays:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "samsara_replays_total", Help: "Replays that ended, by result."}, []string{"result"}),
		seen:     make(map[string]int64),
	}
	m.reg.MustRegister(m.chunks, m.logBytes, m.commits, m.squashes, m.replays, jobsCollector{d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// chunksSeen adds a recording's new chunks to the counter.
// Preconditions: the daemon's mu must be held.
func (m *metrics) chunksSeen(r *Recording, chunks int64) {
	if d := chunks - m.seen[r.ID]; d > 0 {
		m.chunks.Add(float64(d))
		m.seen[r.ID] = chunks
	}
}

// recordingEnded counts an ended recording's last chunks, log bytes and
// parallel recorder counters.
// Preconditions: the daemon's mu must be held.
func (m *metrics) recordingEnded(r *Recording, logPath string) {
	m.chunksSeen(r, r.Progress.Chunks)
	delete(m.seen, r.ID)
	m.logBytes.Add(float64(r.Progress.LogBytes))
	if r.Machine.Mode != "parallel" || r.State == StateFailed {
		return
	}
	s, _ := log.SummarizeFile(logPath)
	if s == nil || s.Recorder == nil {
		return
	}
	for _, v := range s.Recorder.VCPUs {
		m.commits.Add(float64(v.Commits))
		m.squashes.Add(float64(v.Squashes))
	}
}

// replayEnded counts a replay's result.
func (m *metrics) replayEnded(s State) { m.replays.WithLabelValues(string(s)).Inc() }

// jobsCollector reports recordings and replays by state at scrape time.
type jobsCollector struct{ d *Daemon }

var (
	recordingsDesc = prometheus.NewDesc("samsara_recordings", "Recordings in the store by state.", []string{"state"}, nil)
	replaysDesc    = prometheus.NewDesc("samsara_replays", "Replays in the store by state.", []string{"state"}, nil)
	vcpusDesc      = prometheus.NewDesc("samsara_vcpus_used", "vCPUs held by running jobs (budget: --max-vcpus).", nil, nil)
)

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- recordingsDesc
	ch <- replaysDesc
	ch <- vcpusDesc
}

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	d.mu.Lock()
	d.refreshLocked()
	recs, reps := map[State]int{}, map[State]int{}
	for _, r := range d.recs {
		recs[r.State]++
		for _, rp := range r.Replays {
			reps[rp.State]++
		}
	}
	used := d.sched.used
	d.mu.Unlock()
	for _, s := range []State{StateQueued, StateBooting, StateRecording, StateFinished, StateStopped, StateFailed, StateInterrupted} {
		ch <- prometheus.MustNewConstMetric(recordingsDesc, prometheus.GaugeValue, float64(recs[s]), string(s))
	}
	for _, s := range []State{StateQueued, StateRunning, StateMatched, StateMatchedPrefix, StateDiverged, StateFailed, StateInterrupted} {
		ch <- prometheus.MustNewConstMetric(replaysDesc, prometheus.GaugeValue, float64(reps[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(vcpusDesc, prometheus.GaugeValue, float64(used))
}
