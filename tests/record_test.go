package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/tests/testenv"
)

// replays is how many times each recording is replayed (issue 3: "each
// replays identically 5 times in a row").
const replays = 5

// recordAndReplay records PROGRAM from a booted checkpoint, replays it
// `replays` times, and checks that every replay succeeds and prints
// exactly what the recording printed. It returns the recorded output and
// the log path.
func recordAndReplay(t *testing.T, cpus int, ckpt string, extra []string, prog ...string) (string, string) {
	t.Helper()
	return recordAndReplayN(t, replays, cpus, ckpt, extra, prog...)
}

// recordAndReplayN is recordAndReplay with n replays.
func recordAndReplayN(t *testing.T, n, cpus int, ckpt string, extra []string, prog ...string) (string, string) {
	t.Helper()
	return recordAndReplayFlags(t, n, cpus, ckpt, nil, extra, prog...)
}

// recordPrograms are the issue-3 test programs: init running a program
// and powering off, a racy two-thread program, a timer-heavy program, and
// an atomic counter.
var recordPrograms = [][]string{
	{"true"},
	{"race", "100000"},
	{"timers"},
	{"threads2", "100000"},
}

// TestRecordReplay records the test programs on 1 vCPU (two guest threads
// time-share it) and replays each 5 times.
func TestRecordReplay(t *testing.T) {
	testRecordReplay(t, 1)
}

// TestRecordReplaySMP does the same on 2 vCPUs.
func TestRecordReplaySMP(t *testing.T) {
	testRecordReplay(t, 2)
}

func testRecordReplay(t *testing.T, cpus int) {
	programs := recordPrograms
	{
		ckpt := bootedCheckpoint(t, cpus)
		for _, prog := range programs {
			t.Run(fmt.Sprintf("%dcpu/%s", cpus, prog[0]), func(t *testing.T) {
				out, _ := recordAndReplay(t, cpus, ckpt, nil, prog...)
				checkProgramOutput(t, prog, out)
			})
		}
	}
}

// TestRecordReplayDisk records a program that writes a file on the virtio
// disk and reads it back, and checks that the user's image is never
// written.
func TestRecordReplayDisk(t *testing.T) {
	requireGuest(t)
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	os.MkdirAll(content, 0o755)
	os.WriteFile(filepath.Join(content, "hello.txt"), []byte("hello from the disk\n"), 0o644)
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("../guest-images/build-disk.sh", img, content, "8").CombinedOutput(); err != nil {
		t.Fatalf("build-disk.sh: %v\n%s", err, out)
	}
	before := hashFiles(t, img)
	ckpt, boot := diskCheckpoint(t, 1, img, "cat", "/mnt/hello.txt")
	if !strings.Contains(boot, "hello from the disk") {
		t.Fatalf("cold boot with a disk printed:\n%s", boot)
	}
	out, _ := recordAndReplay(t, 1, ckpt, []string{"--vm", img}, "diskrw")
	if !strings.Contains(out, "diskrw: 262144 bytes") || !strings.Contains(out, " ok") {
		t.Fatalf("diskrw output:\n%s", out)
	}
	if after := hashFiles(t, img); after != before {
		t.Fatalf("the disk image was written: hash %s before, %s after", before, after)
	}
}

// TestReplayDetectsDivergence changes one chunk record of a recording and
// expects replay to fail with the typed divergence error; a log cut in
// the middle must be reported with where it breaks.
func TestReplayDetectsDivergence(t *testing.T) {
	ckpt := bootedCheckpoint(t, 1)
	_, rec := recordAndReplay(t, 1, ckpt, nil, "race", "50000")
	raw, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	bad := divergedCopy(t, rec)
	p := samsara(t, resumeTimeout, "replay", bad, "--from-checkpoint", ckpt)
	if p.status == 0 || !strings.Contains(p.stderr, "DIVERGED: replay diverged at chunk") {
		t.Fatalf("replay of a changed log: status %d\nstderr:\n%s", p.status, tail(p.stderr))
	}
	checkStopLosesExit(t, rec, ckpt)

	cut := filepath.Join(t.TempDir(), "cut.zst")
	os.WriteFile(cut, raw[:len(raw)*2/3], 0o644)
	for _, cmd := range [][]string{{"replay", cut, "--from-checkpoint", ckpt}, {"inspect", cut}} {
		p := samsara(t, resumeTimeout, cmd...)
		if p.status == 0 || !strings.Contains(p.stderr, "offset") {
			t.Fatalf("%s of a cut log: status %d, stderr does not say where it breaks:\n%s", cmd[0], p.status, tail(p.stderr))
		}
	}
}

// TestInspect checks the summary of a recording.
func TestInspect(t *testing.T) {
	ckpt := bootedCheckpoint(t, 1)
	_, rec := recordAndReplay(t, 1, ckpt, nil, "threads2", "1000")
	p := samsara(t, resumeTimeout, "inspect", rec)
	for _, want := range []string{"serialized recorder", "1 vCPUs", "chunk", "vcpu 0:", "exit status 0"} {
		if !strings.Contains(p.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, p.stdout)
		}
	}
}

// TestUserSpinWait records spinflag, two threads handing a token back and
// forth by spinning in user mode on a shared flag (no system call, no
// PAUSE), on 2 vCPUs and replays it 3 times (issue 11, item 5). On
// hardware virtualization without a PMU the serialized recorder stops a
// spinning vCPU at a state-matching stop so that the other can run, or,
// asked to (--state-stops), at a state stop; on PVM both recorders do at
// a state stop (on by default there; det_stop.go), and the parallel
// recorder's stop commits the flag the spinning thread set.
func TestUserSpinWait(t *testing.T) {
	requireKVM(t)
	ckpt := bootedCheckpoint(t, 2)
	_, pvm := os.Stat("/sys/module/kvm_pvm")
	type mode struct {
		name  string
		flags []string
		stops bool // the recording must hold state stops
	}
	var modes []mode
	if pvm == nil {
		// On PVM the spin ends only at state stops (on by default in
		// both recorders there).
		modes = []mode{
			{"serialized", []string{"--mode", "serialized"}, true},
			{"parallel", []string{"--mode", "parallel"}, true},
		}
	} else {
		// Without a counter: the serialized recorder's state-matching
		// stops, and its state stops (opt-in off PVM). The parallel
		// recorder has neither there (det_stop.go, parStopsOn): its
		// chunk would never end.
		modes = []mode{
			{"serialized", []string{"--mode", "serialized", "--state-match"}, false},
			{"serialized_state_stops", []string{"--mode", "serialized", "--state-stops"}, true},
		}
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out, rec := recordAndReplayFlags(t, 3, 2, ckpt, m.flags, nil, "spinflag", "20")
			if !strings.Contains(out, "spinflag: rounds=20 ok") {
				t.Fatalf("spinflag output:\n%s", out)
			}
			if m.stops {
				p := samsara(t, resumeTimeout, "inspect", rec)
				if !regexp.MustCompile(`(?m)^\s+state-stop\s+[1-9]`).MatchString(p.stdout) {
					t.Errorf("the recording has no chunk ended at a state stop; inspect says:\n%s", p.stdout)
				}
				checkStopLosesExit(t, rec, ckpt)
			}
		})
	}
}

// checkStopLosesExit replays a copy of rec in which a chunk ended at a
// state stop lost an exit, and expects the divergence: replay puts the
// stop's state in place after the chunk's exits, so only its check of
// where the last exit left the vCPU (on PVM, the run on to the stop's
// code page) can see it (det_stop.go). A recording with no such chunk
// is noted.
func checkStopLosesExit(t *testing.T, rec, ckpt string) {
	t.Helper()
	bad, ok := divergedCopyWhere(t, rec, func(c *log.Chunk) bool { return c.Reason == log.ReasonStateStop })
	if !ok {
		testenv.Note(t, "the recording has no chunk ended at a state stop after an exit: a lost exit before a stop was not checked")
		return
	}
	p := samsara(t, resumeTimeout, "replay", bad, "--from-checkpoint", ckpt)
	if p.status == 0 || !strings.Contains(p.stderr, "DIVERGED: replay diverged at chunk") {
		t.Fatalf("replay of a log whose state-stop chunk lost an exit: status %d\nstderr:\n%s", p.status, tail(p.stderr))
	}
	for _, l := range strings.Split(p.stderr, "\n") {
		if strings.Contains(l, "DIVERGED") {
			t.Logf("a state-stop chunk that lost an exit: %s", l)
		}
	}
}

// TestRecordColdSMP records a cold boot on 2 vCPUs, the kernel's SMP
// bring-up included, and replays it. Without a counter the boot CPU's
// wait for the second one (do_boot_cpu's schedule() loop, no exit, no
// cpu_relax) is ended by a state-matching stop; before those, such
// recordings stalled there (measured in the emulated SVM host: 2 of 2).
func TestRecordColdSMP(t *testing.T) {
	kernel, initrd := requireGuest(t)
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		// Under PVM the recorder counts the emulated kernel and never
		// needs these stops; the test took 189 s there (the replay of a
		// 2-vCPU cold boot alone 145 s). make test runs it in the
		// emulated SVM host (make test-hostvm; not yet in the smoke set
		// while --state-match is experimental).
		t.Skip("covers the no-counter recorder of hardware virtualization; PVM counts guest kernel instructions instead (and takes 3 minutes over it)")
	}
	rec := filepath.Join(t.TempDir(), "cold.zst")
	r := samsara(t, coldBootTimeout, "record", "--cpus", "2", "--state-match", "--kernel", kernel, "--initrd", initrd, "-o", rec, "--", "race", "20000")
	if r.status != 0 || !strings.Contains(r.stdout, "race: atomic=40000") {
		t.Fatalf("cold record exited %d\nstdout:\n%s\nstderr:\n%s", r.status, tail(r.stdout), tail(r.stderr))
	}
	p := samsara(t, coldBootTimeout, "replay", rec, "--kernel", kernel, "--initrd", initrd)
	if p.status != 0 || !strings.Contains(p.stderr, "replay matched") {
		t.Fatalf("replay of a cold 2-vCPU recording: status %d\nstderr:\n%s", p.status, tail(p.stderr))
	}
	if p.stdout != r.stdout {
		t.Fatalf("replay printed\n%s\nbut the recording printed\n%s", tail(p.stdout), tail(r.stdout))
	}
}
