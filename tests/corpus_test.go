package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/tests/testenv"
)

// The behaviour corpus (issue 19 item 3): small static programs under
// tests/corpus, built by `make corpus` into $SAMSARA_BUILD/corpus, each
// printing what it observed and "<name>: ok". TestCorpus runs them all
// natively, then inside the guest on 2 vCPUs under `run`, `record`
// (serialized), `record --mode parallel` and `replay` of each recording,
// and checks that every program prints in the guest what it printed
// natively and that each replay prints what its recording printed.
//
// To stay cheap, every program is on one ext2 disk, one checkpoint is
// booted, and each mode runs the whole corpus as one batch: corpus-run
// (tests/corpus/runner) runs the programs in turn with a per-program time
// limit and frames each one's output with begin/end markers, which the
// test splits into one subtest per program.

// corpusLimit is corpus-run's per-program limit, in guest CLOCK_MONOTONIC
// seconds. The slowest program takes ~1 s natively and up to ~10 s in the
// guest under PVM `run` (every guest kernel instruction is emulated); under
// the recorders guest time runs slower than real time. A program that
// hangs in the guest is killed at the limit and reported as a timeout,
// and the batch goes on.
const corpusLimit = 30

// corpusNativeTimeout bounds the native batch (~5 s on 2 cores).
const corpusNativeTimeout = 3 * time.Minute

// corpusBatchTimeout bounds one batch in the guest (run, record or
// replay, all segments together). A batch took 2-4 min here on 2 cores
// shared with other jobs; a batch that reaches the bound fails with a
// goroutine dump of samsara. In the emulated SVM host it is
// corpusHostBatchTimeout: there each program that stalls samsara costs
// its 2.5-minute stall bound twice (measured 2026-12-07: the serialized
// batch reached 12 min with six programs left after three such stalls,
// the programs that ran taking about a minute in all).
const (
	corpusBatchTimeout     = 12 * time.Minute
	corpusHostBatchTimeout = 30 * time.Minute
)

// batchTimeout is this machine's corpusBatchTimeout.
func batchTimeout() time.Duration {
	if os.Getenv("SAMSARA_HOSTVM") != "" {
		return corpusHostBatchTimeout
	}
	return corpusBatchTimeout
}

// corpusModes are the guest batches: name, samsara subcommand, and the
// flags record takes. Each recording is replayed once.
var corpusModes = []struct {
	name   string
	record bool
	flags  []string
}{
	{"run", false, nil},
	{"serialized", true, []string{"--mode", "serialized"}},
	{"parallel", true, []string{"--mode", "parallel"}},
}

// debugWritesModes record with --debug-writes (a hash of every page each
// chunk wrote) and replay against it, so that a divergence also names the
// first chunk whose writes the replay did not reproduce: the parallel
// batch diverged in 2 CI runs in a row (never in 9 runs here), at an
// APIC write, and the log alone holds only a hash of the registers there.
var debugWritesModes = map[string]bool{"parallel": true}

// knownFailure is a program that does not behave in the guest under one
// mode on one platform today. Its subtest skips with the reason, which
// says what was measured. If hang is set, the program hangs samsara
// itself (no guest-side limit can end it), so it is left out of that
// mode's batch; otherwise it runs and its result is only reported.
type knownFailure struct {
	prog, mode, platform string
	issue                int
	hang                 bool // samsara fails or stalls on it every time: left out of the batch
	flaky                bool // samsara failed or stalled on it in some tries: skipped when it does
	reason               string
}

// corpusKnown lists the known failures. Set SAMSARA_CORPUS_KNOWN=1 to run
// every program in every batch anyway (to re-measure them).
//
// Measured on PVM (this project's machine, 2 vCPUs, 2 host cores shared
// with other jobs), 2026-12-06, with the programs in one batch and again
// alone where it says so; the serialized entries again on 2026-12-07 with
// state stops on (alarm_loop, setitimer_virtual and munmap_in_use pass
// since).
var corpusKnown = []knownFailure{
	// Measured in the emulated SVM host (no PMU), 2026-12-07, the
	// serialized batch on 2 vCPUs with state stops (on by default there
	// since; SAMSARA_CORPUS_KNOWN=1): a vCPU that spins waiting for a
	// thread of the other vCPU without an exit keeps the serialized
	// recorder's turn until a state stop ends its chunk, at most every
	// 100 ms and paced by the stops' log bytes (det_stop.go). Without
	// stops both stalled samsara (2 of 2 tries each); alarm_loop,
	// setitimer_virtual and munmap_in_use failed or stalled without them
	// and pass with them.
	{prog: "sched_yield", mode: "serialized", platform: "svm", issue: 11,
		reason: "timed out at corpus-run's 30 s guest-time limit (1 of 1, the recording replayed matched): 2 threads hand a turn back and forth 400 times by sched_yield, which makes no exit on SVM, so each hand-over waits for a state stop (100 ms at least)"},
	{prog: "thread_exit_busy", mode: "serialized", platform: "svm", issue: 11, flaky: true,
		reason: "3 tries with state stops: passed once (its retry), timed out once at corpus-run's 30 s guest-time limit (replay matched), and once no program ended for 3 min of host time (the corpus's own bound): two threads spin in user mode while the main thread's 1 ms sleeps wait for state stops, as on PVM"},
	// (alarm_loop and setitimer_virtual pass under both recorders on
	// PVM since their state stops: det_stop.go.)
	// Two threads spin in user mode (malloc/free until a flag) while the
	// main thread sleeps 1 ms at a time and then sets the flag: its
	// timer never fires while the spinners run. The serialized recorder's
	// state stops (every 100 ms at most) let the main thread run, but
	// not often enough: it did not finish within corpus-run's 30 s of
	// guest time (2026-12-07, 1 of 1; the recording replayed matched).
	{prog: "thread_exit_busy", mode: "serialized", platform: "pvm", issue: 19,
		reason: "timed out at corpus-run's 30 s guest-time limit (2 threads spin in user mode while the main thread sleeps 1 ms at a time, 60 times; state stops end a spinner's chunk at most every 100 ms)"},
	{prog: "thread_exit_busy", mode: "parallel", platform: "pvm", issue: 19,
		reason: "timed out at corpus-run's 30 s guest-time limit (2026-12-07, 1 of 1, the recording replayed matched with 24 state stops; before state stops the recording made no progress for 4 min): 2 threads spin in user mode while the main thread sleeps 1 ms at a time, 60 times"},
	// Two threads spin in user mode on the 2 vCPUs while the main thread
	// creates 60 threads and sleeps 1 ms at a time: even without a
	// recorder the main thread did not finish within corpus-run's 30 s
	// of guest time in 2 of 4 `run` batches (natively 0.16 s; the other
	// 2 passed).
	{prog: "thread_exit_busy", mode: "run", platform: "pvm", issue: 19, flaky: true,
		reason: "timed out at corpus-run's 30 s guest-time limit in 2 of 4 run batches (2 threads spin in user mode on both vCPUs while the main thread creates threads and sleeps 1 ms at a time; natively 0.16 s)"},
	// (barrier, pipe_threads and epoll were listed here as intermittent
	// serialized-recorder stalls, 1 in 5-10 tries: vCPU 1 in KVM_RUN,
	// not ended by kicks. The cause was KVM_SET_SIGNAL_MASK's argument
	// layout, which blocked the kick signal at random (fixed 2026-12-07,
	// internal/kvm.SetSignalMask); since then every serialized batch
	// passed them: 5 of 5, CI included.)
}

// corpusProgram is one program's part of a batch's console output.
type corpusProgram struct {
	out string // what it printed, "\r\n" turned into "\n"
	end string // the end marker's verdict: "status N", "signal N" or "timeout"
}

// parseCorpus splits corpus-run's output into programs by their begin/end
// markers. done is whether the batch printed its final "=== done".
func parseCorpus(s string) (progs map[string]corpusProgram, done bool) {
	progs = map[string]corpusProgram{}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var cur string
	var buf strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "=== begin "):
			cur, in = strings.TrimPrefix(line, "=== begin "), true
			buf.Reset()
		case in && strings.HasPrefix(line, "=== end "+cur+" "):
			verdict := strings.TrimPrefix(line, "=== end "+cur+" ")
			if i := strings.Index(verdict, " ("); i >= 0 {
				verdict = verdict[:i] // the guest time it took, for information
			}
			progs[cur] = corpusProgram{out: buf.String(), end: verdict}
			in = false
		case line == "=== done":
			done = true
		case in:
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
	}
	return progs, done
}

// corpusDir returns the built corpus ($SAMSARA_BUILD/corpus) and its
// program names (every executable but the runner).
func corpusDir(t *testing.T) (string, []string) {
	t.Helper()
	dir := filepath.Join(buildDir, "corpus")
	if _, err := os.Stat(filepath.Join(dir, "corpus-run")); err != nil {
		if os.Getenv("SAMSARA_HOSTVM") != "" {
			t.Skipf("the behaviour corpus is not in the host VM's payload (only its full set has it: make test-hostvm): %v", err)
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("behaviour corpus missing in CI (make all should have built it): %v", err)
		}
		t.Skipf("behaviour corpus not built (run make corpus): %v", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var progs []string
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 && e.Name() != "corpus-run" {
			progs = append(progs, e.Name())
		}
	}
	sort.Strings(progs)
	if len(progs) < 40 {
		t.Fatalf("%s holds %d programs, want at least 40 (issue 19)", dir, len(progs))
	}
	if only := os.Getenv("SAMSARA_CORPUS_ONLY"); only != "" {
		// A developer's shortcut to a few programs (comma-separated);
		// make test never sets it.
		var some []string
		for _, p := range strings.Split(only, ",") {
			if !slices.Contains(progs, p) {
				t.Fatalf("SAMSARA_CORPUS_ONLY names %q, which is not in %s", p, dir)
			}
			some = append(some, p)
		}
		progs = some
	}
	return dir, progs
}

// corpusPlatform names the platform for the known-failure list: "svm" in
// the emulated AMD host, else what samsara probe reports ("pvm" here).
func corpusPlatform(t *testing.T) string {
	if os.Getenv("SAMSARA_HOSTVM") != "" {
		return "svm"
	}
	out, _ := exec.Command(samsaraBin, "probe").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "platform:") {
			f := strings.Fields(strings.TrimPrefix(line, "platform:"))
			if len(f) > 0 {
				return strings.ToLower(f[0])
			}
		}
	}
	return "unknown"
}

// knownFor returns the known failure of prog in mode on platform, if any.
func knownFor(prog, mode, platform string) (knownFailure, bool) {
	for _, k := range corpusKnown {
		if k.prog == prog && k.mode == mode && k.platform == platform {
			return k, true
		}
	}
	return knownFailure{}, false
}

// runNativeCorpus runs the batch on this machine.
func runNativeCorpus(t *testing.T, dir string, progs []string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "corpus-run"), append([]string{dir, fmt.Sprint(corpusLimit)}, progs...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("native corpus-run: %v\n%s", err, tail(out.String()))
		}
	case <-time.After(corpusNativeTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("native corpus-run of %d programs: not done after %v\n%s", len(progs), corpusNativeTimeout, tail(out.String()))
	}
	return out.String()
}

func TestCorpus(t *testing.T) {
	requireGuest(t)
	dir, progs := corpusDir(t)
	platform := corpusPlatform(t)
	rerunKnown := os.Getenv("SAMSARA_CORPUS_KNOWN") != ""

	// Natively first: every program must pass here, and its output is
	// what the guest runs are compared with.
	start := time.Now()
	native, done := parseCorpus(runNativeCorpus(t, dir, progs))
	if !done {
		t.Fatal("native corpus-run did not print === done")
	}
	t.Logf("native batch of %d programs: %v", len(progs), time.Since(start).Round(time.Millisecond))
	nativeOK := map[string]bool{}
	t.Run("native", func(t *testing.T) {
		for _, p := range progs {
			t.Run(p, func(t *testing.T) {
				r, ok := native[p]
				switch {
				case !ok:
					t.Fatalf("no output framed for %s", p)
				case r.end != "status 0" || !strings.HasSuffix(r.out, p+": ok\n"):
					t.Fatalf("natively: %s, printed:\n%s", r.end, r.out)
				}
				nativeOK[p] = true
			})
		}
	})

	// One disk with every program, one checkpoint booted with it.
	tmp := t.TempDir()
	content := filepath.Join(tmp, "corpus")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{"corpus-run"}, progs...) {
		raw, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(content, p), raw, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(tmp, "corpus.img")
	if out, err := exec.Command("../guest-images/build-disk.sh", img, content).CombinedOutput(); err != nil {
		t.Fatalf("build-disk.sh: %v\n%s", err, out)
	}
	start = time.Now()
	ckpt, boot := diskCheckpoint(t, 2, img, "/mnt/corpus-run", "/mnt", "1")
	if _, done := parseCorpus(boot); !done {
		t.Fatalf("cold boot with the corpus disk: corpus-run with no programs did not print === done:\n%s", tail(boot))
	}
	t.Logf("cold boot with the corpus disk: %v", time.Since(start).Round(time.Second))

	for _, m := range corpusModes {
		// The batch: every program but those known to take samsara down
		// in this mode (hang: they would cost a stall bound each time).
		var batch []string
		for _, p := range progs {
			if k, ok := knownFor(p, m.name, platform); ok && k.hang && !rerunKnown {
				continue
			}
			batch = append(batch, p)
		}
		t.Run(m.name, func(t *testing.T) {
			var guest map[string]corpusProgram
			var broken map[string]string
			t.Run("batch", func(t *testing.T) {
				guest, broken = corpusBatch(t, m.name, m.record, m.flags, img, ckpt, batch)
			})
			for _, p := range progs {
				t.Run(p, func(t *testing.T) {
					k, known := knownFor(p, m.name, platform)
					if known && !k.flaky && !rerunKnown {
						if g, ok := guest[p]; ok && g.end == "status 0" && g.out == native[p].out {
							t.Skipf("listed as a known failure on %s under %s (issue %d), but it PASSED this time: remove it from corpusKnown if it keeps passing", platform, m.name, k.issue)
						}
						t.Skipf("known failure on %s under %s (issue %d): %s", platform, m.name, k.issue, k.reason)
					}
					if !nativeOK[p] {
						t.Skip("fails natively (see native/" + p + ")")
					}
					if why, ok := broken[p]; ok {
						if known && k.flaky {
							testenv.Note(t, "this time: %s", why)
							t.Skipf("known intermittent failure on %s under %s (issue %d): %s", platform, m.name, k.issue, k.reason)
						}
						t.Fatalf("under %s: %s", m.name, why)
					}
					if guest == nil {
						t.Fatalf("the %s batch failed (see %s/batch)", m.name, m.name)
					}
					g, ok := guest[p]
					if !ok {
						t.Fatalf("no output framed for %s in the %s batch", p, m.name)
					}
					if g.end != "status 0" || g.out != native[p].out {
						if known && k.flaky {
							testenv.Note(t, "this time: %s, printed\n%s", g.end, g.out)
							t.Skipf("known intermittent failure on %s under %s (issue %d): %s", platform, m.name, k.issue, k.reason)
						}
						t.Fatalf("under %s in the guest: %s, printed\n%s\nnatively it printed\n%s", m.name, g.end, g.out, native[p].out)
					}
				})
			}
		})
	}
}

// corpusBatch runs corpus-run over batch in the guest from ckpt under
// `run` or `record` (with flags), and replays each recording once: the
// replay must match and print exactly what its recording printed. When
// samsara stops in the middle of the batch (it exits with an error, or no
// program ends for corpusStall), the program that was running is
// returned in broken with what happened, and a new segment starts from
// the checkpoint with the programs after it; the segments' framed output
// is returned in guest.
//
// Each program gets one retry, and each recording's replay one: the
// serialized recorder's stall in user mode (issue 19) is an open finding
// that comes in about one batch of five, in whichever program runs; the
// parallel batch's replay divergence that came as often (an interrupt
// decision racing a commit, fixed by det_par.go's apicMu) keeps the retry
// as a safeguard. A program that breaks samsara again, or a segment whose
// second recording does not replay either, fails; what the first try
// said is noted either way (testenv.Note).
func corpusBatch(t *testing.T, mode string, record bool, flags []string, img, ckpt string, batch []string) (guest map[string]corpusProgram, broken map[string]string) {
	t.Helper()
	guest, broken = map[string]corpusProgram{}, map[string]string{}
	retried := map[string]string{} // program -> why its first try broke
	replayRetried := false
	start := time.Now()
	for seg := 1; len(batch) > 0; seg++ {
		cmd := append([]string{"/mnt/corpus-run", "/mnt", fmt.Sprint(corpusLimit)}, batch...)
		args := []string{"run", "--cpus", "2", "--vm", img, "--from-checkpoint", ckpt}
		rec := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.zst", mode, seg))
		var replayFlags []string
		if record {
			args = append([]string{"record", "--cpus", "2", "--vm", img, "--from-checkpoint", ckpt, "-o", rec}, flags...)
			if debugWritesModes[mode] {
				dw := rec + ".writes"
				args = append(args, "--debug-writes", dw)
				replayFlags = []string{"--debug-writes", dw}
			}
		}
		r, killed := samsaraWatched(t, append(append(args, "--"), cmd...)...)
		progs, done := parseCorpus(r.stdout)
		for p, g := range progs {
			guest[p] = g
		}
		t.Logf("%s segment %d: %d of %d programs in %v", mode, seg, len(progs), len(batch), r.elapsed.Round(time.Millisecond))
		if done && r.status == 0 && killed == "" {
			if record {
				p := samsara(t, corpusBatchTimeout, append([]string{"replay", rec, "--vm", img, "--from-checkpoint", ckpt}, replayFlags...)...)
				t.Logf("%s segment %d: replay in %v", mode, seg, p.elapsed.Round(time.Millisecond))
				if p.status != 0 || !strings.Contains(p.stderr, "replay matched") {
					msg := fmt.Sprintf("replay of the %s recording (segment %d): status %d\nfirst write mismatches (--debug-writes):\n%s\nfirst chunk end mismatches (--debug-writes):\n%s\nstderr:\n%s",
						mode, seg, p.status, firstLines(p.stderr, "write mismatch", 5), firstLines(p.stderr, "chunk end mismatch", 3), tail(p.stderr))
					if !replayRetried {
						replayRetried = true
						testenv.Note(t, "%s (recording and replaying the segment once more)", msg)
						continue
					}
					t.Errorf("%s (the second recording of the segment did not replay either)", msg)
				} else if p.stdout != r.stdout {
					t.Errorf("replay of the %s recording (segment %d) printed other console output than the recording: %s\n(both kept in %s)",
						mode, seg, firstDiff(r.stdout, p.stdout), keepOutputs(t, mode, seg, r.stdout, p.stdout))
				}
			}
			break
		}
		// samsara stopped in the middle: blame the program that had begun
		// and not ended, and go on after it.
		cur := lastBegun(r.stdout)
		if cur == "" {
			t.Fatalf("samsara %s of the corpus stopped before any program began (status %d)\nstdout:\n%s\nstderr:\n%s", args[0], r.status, tail(r.stdout), tail(r.stderr))
		}
		why := fmt.Sprintf("samsara %s exited %d while it ran: %s", args[0], r.status, lastLine(r.stderr))
		if killed != "" {
			why = fmt.Sprintf("samsara %s was killed with SIGQUIT while it ran: %s (%s)", args[0], killed, vcpuSummary(r.stderr))
		}
		delete(guest, cur)
		first, again := retried[cur]
		if !again {
			retried[cur] = why
			testenv.Note(t, "%s: %s: %s (retrying it once)", mode, cur, why)
		} else {
			t.Logf("%s: %s: %s (its retry)", mode, cur, why)
			broken[cur] = fmt.Sprintf("%s (and in its first try: %s)", why, first)
		}
		for i, p := range batch {
			if p == cur {
				if again {
					i++ // the retry broke too: go on after it
				}
				batch = batch[i:]
				break
			}
		}
		if time.Since(start) > batchTimeout() {
			t.Fatalf("%s: the batch's segments took over %v; left: %v", mode, batchTimeout(), batch)
		}
	}
	return guest, broken
}

// corpusStall is how long a batch may go without a program ending before
// samsara is killed: the slowest program took ~20 s of wall time here.
const corpusStall = 3 * time.Minute

// samsaraWatched runs samsara like samsara() but streams its stdout, and
// kills it (SIGQUIT first, for the goroutine dump on stderr) when no
// "=== end" line arrives for corpusStall or the whole run reaches
// corpusBatchTimeout. It returns why it killed samsara, or "".
func samsaraWatched(t *testing.T, args ...string) (result, string) {
	t.Helper()
	cmd := exec.Command(samsaraBin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out strings.Builder
	progress := make(chan struct{}, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		// Line by line, byte for byte (a Scanner would drop the
		// console's \r, and replay's output is compared with this).
		br := bufio.NewReader(pr)
		for {
			line, err := br.ReadString('\n')
			mu.Lock()
			out.WriteString(line)
			mu.Unlock()
			if strings.HasPrefix(line, "=== end ") {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { <-readDone; waitDone <- cmd.Wait() }()
	killed := ""
	stall := time.NewTimer(corpusStall)
	total := time.NewTimer(corpusBatchTimeout)
	defer stall.Stop()
	defer total.Stop()
	for {
		select {
		case <-progress:
			stall.Reset(corpusStall)
			continue
		case <-stall.C:
			killed = fmt.Sprintf("no program ended for %v", corpusStall)
		case <-total.C:
			killed = fmt.Sprintf("the batch reached its %v bound", corpusBatchTimeout)
		case err = <-waitDone:
		}
		break
	}
	if killed != "" {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case err = <-waitDone:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			err = <-waitDone
		}
	}
	mu.Lock()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r, killed
}

// lastBegun is the program corpus-run began last without ending it.
func lastBegun(out string) string {
	cur := ""
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "=== begin "):
			cur = strings.TrimPrefix(line, "=== begin ")
		case strings.HasPrefix(line, "=== end "):
			cur = ""
		}
	}
	return cur
}

// vcpuSummary says where samsara's vCPU goroutines were in a SIGQUIT dump
// (the functions of internal/vmm on each stack's top), for a stall report.
func vcpuSummary(dump string) string {
	var where []string
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.Contains(g, "internal/vmm.(*vcpu).") {
			continue
		}
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "github.com/samsara-vmm/samsara/internal/vmm.") {
				f := strings.TrimPrefix(line, "github.com/samsara-vmm/samsara/internal/vmm.")
				if i := strings.LastIndex(f, "("); i > 0 {
					f = f[:i] // drop the arguments
				}
				where = append(where, f)
				break
			}
		}
	}
	if len(where) == 0 {
		return "no vCPU goroutine in the dump"
	}
	return "vCPU goroutines in " + strings.Join(where, ", ")
}

// firstDiff describes where two console outputs first differ: the line
// number and a few lines of each around it.
func firstDiff(rec, rep string) string {
	a, b := strings.Split(rec, "\n"), strings.Split(rep, "\n")
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	window := func(l []string) string {
		lo, hi := max(i-3, 0), min(i+4, len(l))
		return strings.Join(l[lo:hi], "\n")
	}
	return fmt.Sprintf("first at line %d of %d (recording) / %d (replay)\nrecording:\n%s\nreplay:\n%s", i+1, len(a), len(b), window(a), window(b))
}

// keepOutputs writes a recording's and its replay's console output where
// they outlive the test, and returns the directory.
func keepOutputs(t *testing.T, mode string, seg int, rec, rep string) string {
	dir, err := os.MkdirTemp("", "samsara-corpus-")
	if err != nil {
		t.Log(err)
		return "(not kept)"
	}
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.record.txt", mode, seg)), []byte(rec), 0o644)
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.replay.txt", mode, seg)), []byte(rep), 0o644)
	return dir
}

// TestParseCorpus checks the splitting of corpus-run's output (no KVM).
func TestParseCorpus(t *testing.T) {
	out := "boot noise\r\n=== begin a\r\na: ok\r\n=== end a status 0 (0.10 s)\r\n" +
		"=== begin b\r\nb: FAIL x\r\n=== end b status 1 (2.00 s)\r\n=== begin c\r\n=== end c timeout (30.01 s)\r\n" +
		"=== begin d\r\nd: half a line"
	progs, done := parseCorpus(out)
	want := map[string]corpusProgram{
		"a": {out: "a: ok\n", end: "status 0"},
		"b": {out: "b: FAIL x\n", end: "status 1"},
		"c": {out: "", end: "timeout"},
	}
	if done || len(progs) != len(want) {
		t.Fatalf("parseCorpus: done %v, %d programs %v; want not done, %d", done, len(progs), progs, len(want))
	}
	for name, w := range want {
		if progs[name] != w {
			t.Errorf("%s: got %+v, want %+v", name, progs[name], w)
		}
	}
	if got := lastBegun(out); got != "d" {
		t.Errorf("lastBegun = %q, want d", got)
	}
	if _, done := parseCorpus(out + "\r\n=== end d status 0\r\n=== done\r\n"); !done {
		t.Error("=== done not seen")
	}
	if got := lastBegun("=== begin a\n=== end a status 0\n"); got != "" {
		t.Errorf("lastBegun after an end = %q, want empty", got)
	}
}

// firstLines returns the first n lines of out that contain substr, or
// "none".
func firstLines(out, substr string, n int) string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, substr) && len(got) < n {
			got = append(got, l)
		}
	}
	if len(got) == 0 {
		return "none"
	}
	return strings.Join(got, "\n")
}
