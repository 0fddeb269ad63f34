package suite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Options configure a suite run.
type Options struct {
	// Binary is the samsara executable every job runs (normally the
	// running one, os.Executable).
	Binary string
	// Kernel and Initrd boot the guest for the checkpoints.
	Kernel, Initrd string
	// CacheDir keeps booted checkpoints between runs, keyed by the
	// kernel, initramfs, disk image, binary and machine (the same names
	// as tests/harness_test.go's, so the two share cold boots).
	CacheDir string
	// OutDir receives junit.xml, results.json, report.md, chart.svg and
	// failed/.
	OutDir string
	// Slots is how many vCPUs' worth of jobs run at once (the host's CPUs).
	Slots int
	// Progress receives a line per finished job; nil: quiet.
	Progress io.Writer
	// Baseline, if set, is compared against (Compare).
	Baseline *Results
	// HostCPUs is recorded in the results.
	HostCPUs int
	// Daemon, if set, is the socket of a samsara daemon that makes the
	// recordings and replays (record --daemon, replay --daemon); run,
	// inspect and the cold boots stay local. Its --images must hold the
	// checkpoint cache and the disk images.
	Daemon string
}

// runner is one suite run.
type runner struct {
	opts  Options
	slots *slots
	// ckpts holds one entry per checkpoint key, booted once.
	ckptMu sync.Mutex
	ckpts  map[string]*ckptEntry
	// pend holds passed cases' files until the baseline comparison.
	pendMu sync.Mutex
	pend   map[*Case]pendingCase
	// progress counts finished jobs for the progress lines.
	progMu         sync.Mutex
	progDone, jobs int
}

type ckptEntry struct {
	once sync.Once
	path string
	err  error
}

// coldBootTimeout bounds one cold boot: tests/harness_test.go's bound for
// the same boot (PVM emulates every guest kernel instruction).
const coldBootTimeout = 8 * time.Minute

// Run runs every workload of s and writes the reports to o.OutDir. The
// error is for what kept the suite from running or reporting; failed
// cases are in the Results (Failed).
func Run(ctx context.Context, s *Suite, o Options) (*Results, error) {
	if err := os.MkdirAll(filepath.Join(o.OutDir, "work"), 0o755); err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	r := &runner{opts: o, slots: newSlots(o.Slots), ckpts: map[string]*ckptEntry{}, pend: map[*Case]pendingCase{}}
	res := &Results{Suite: s.Name, Started: time.Now().UTC(), HostCPUs: o.HostCPUs}
	type unit struct {
		w     *Workload
		vcpus int
		cases []*Case
	}
	var units []*unit
	for i := range s.Workloads {
		w := &s.Workloads[i]
		for _, n := range w.VCPUs {
			u := &unit{w: w, vcpus: n}
			for _, m := range w.Modes {
				c := &Case{Name: fmt.Sprintf("%s/%dcpu/%s", w.Name, n, m), Workload: w.Name, VCPUs: n, Mode: m,
					Command: w.Command, Thresholds: w.Thresholds}
				u.cases = append(u.cases, c)
				res.Cases = append(res.Cases, c)
			}
			r.jobs += 1 + len(w.Modes)*(1+*w.Replays)
			units = append(units, u)
		}
	}
	var wg sync.WaitGroup
	for _, u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runUnit(ctx, u.w, u.vcpus, u.cases)
		}()
	}
	wg.Wait()
	res.WallSeconds = time.Since(res.Started).Seconds()
	if o.Baseline != nil {
		Compare(res, o.Baseline)
	}
	for _, c := range res.Cases {
		if len(c.Failures) > 0 && c.Kept == "" {
			r.keepPending(c) // a regression: keep what the case made
		}
	}
	os.RemoveAll(filepath.Join(o.OutDir, "work"))
	return res, WriteReports(res, o.OutDir)
}

// progress prints one line per finished job when Progress is set.
func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress == nil {
		return
	}
	r.progMu.Lock()
	defer r.progMu.Unlock()
	r.progDone++
	fmt.Fprintf(r.opts.Progress, "[%d/%d] %s\n", r.progDone, r.jobs, fmt.Sprintf(format, args...))
}

// checkpoint returns a checkpoint of the guest booted on vcpus vCPUs with
// w's disk and machine settings, from the cache or a cold boot.
func (r *runner) checkpoint(ctx context.Context, w *Workload, vcpus int) (string, error) {
	key, err := r.ckptKey(w, vcpus)
	if err != nil {
		return "", err
	}
	r.ckptMu.Lock()
	e, ok := r.ckpts[key]
	if !ok {
		e = &ckptEntry{path: filepath.Join(r.opts.CacheDir, "ckpt-"+key+".ckpt")}
		r.ckpts[key] = e
	}
	r.ckptMu.Unlock()
	e.once.Do(func() {
		if _, err := os.Stat(e.path); err == nil {
			return
		}
		if err := os.MkdirAll(r.opts.CacheDir, 0o755); err != nil {
			e.err = fmt.Errorf("checkpoint cache: %w", err)
			return
		}
		tmp := e.path + ".tmp" + strconv.Itoa(os.Getpid())
		args := []string{"run", "--cpus", strconv.Itoa(vcpus), "--kernel", r.opts.Kernel, "--initrd", r.opts.Initrd,
			"--save-checkpoint", tmp}
		args = append(append(args, machineFlags(w)...), "--", "true")
		j := r.exec(ctx, vcpus, coldBootTimeout, args...)
		r.progress("cold boot on %d vCPUs%s: %.1fs", vcpus, imageNote(w), j.wall.Seconds())
		if j.err != nil || j.status != 0 {
			os.Remove(tmp)
			e.err = fmt.Errorf("%s", j.failure("cold boot"))
			return
		}
		if err := os.Rename(tmp, e.path); err != nil {
			e.err = fmt.Errorf("checkpoint cache: %w", err)
		}
	})
	return e.path, e.err
}

func imageNote(w *Workload) string {
	if w.Image == "" {
		return ""
	}
	return " with " + filepath.Base(w.Image)
}

// ckptKey names a booted checkpoint: a short SHA-256 over the kernel,
// initramfs and binary (tests/harness_test.go's key for the same boot),
// then the disk image's and the machine settings' hashes when set.
func (r *runner) ckptKey(w *Workload, vcpus int) (string, error) {
	h := sha256.New()
	files := []string{r.opts.Kernel, r.opts.Initrd, r.opts.Binary}
	for _, p := range files {
		if err := hashInto(h, p); err != nil {
			return "", err
		}
	}
	key := hex.EncodeToString(h.Sum(nil))[:16] // 64 bits: the harness's length
	if w.Image != "" || w.Memory != "" || w.Append != "" {
		h := sha256.New()
		if w.Image != "" {
			if err := hashInto(h, w.Image); err != nil {
				return "", err
			}
		}
		fmt.Fprintf(h, "\x00mem=%s\x00append=%s", w.Memory, w.Append)
		key += "-m" + hex.EncodeToString(h.Sum(nil))[:16]
	}
	return fmt.Sprintf("%s-%dcpu", key, vcpus), nil
}

func hashInto(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checkpoint key: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("checkpoint key: %w", err)
	}
	return nil
}

// machineFlags are the flags every job of w passes for its machine.
func machineFlags(w *Workload) []string {
	var a []string
	if w.Image != "" {
		a = append(a, "--vm", w.Image)
	}
	if w.Memory != "" {
		a = append(a, "--mem", w.Memory)
	}
	if w.Append != "" {
		a = append(a, "--append", w.Append)
	}
	return a
}

// programFlags are run's and record's flags for w's program environment.
func programFlags(w *Workload) []string {
	var a []string
	if w.Cwd != "" {
		a = append(a, "--cwd", w.Cwd)
	}
	for _, kv := range w.Env {
		a = append(a, "--env", kv)
	}
	if w.Stdin != "" {
		a = append(a, "--stdin", w.Stdin)
	}
	return a
}
