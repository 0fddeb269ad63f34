// Package tests holds samsara's end-to-end tests: they boot the reference
// guest under the samsara binary and check what a user would see (console
// output and exit status).
package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// samsaraBin is built once by TestMain.
var samsaraBin string

// buildDir holds the reference vmlinux and initramfs (make all).
var buildDir string

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	buildDir = os.Getenv("SAMSARA_BUILD")
	if buildDir == "" {
		buildDir = filepath.Join(root, "build")
	}
	tmp, err := os.MkdirTemp("", "samsara-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// SAMSARA_BIN names a samsara built beforehand: the host VM
	// (tests/hostvm) has no Go toolchain, so its binary is built outside.
	samsaraBin = os.Getenv("SAMSARA_BIN")
	if samsaraBin == "" {
		samsaraBin = filepath.Join(tmp, "samsara")
		cmd := exec.Command("go", "build", "-o", samsaraBin, "./cmd/samsara")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build samsara: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// requireKVM skips a test that needs /dev/kvm on a host without it.
func requireKVM(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs read-write /dev/kvm: %v", err)
	}
	f.Close()
}

// requireGuest skips when the reference guest has not been built, and
// returns the kernel and initramfs paths.
func requireGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	requireKVM(t)
	kernel = filepath.Join(buildDir, "vmlinux")
	initrd = filepath.Join(buildDir, "initramfs.cpio")
	for _, p := range []string{kernel, initrd} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("reference guest missing in CI (make all should have built it): %v", err)
			}
			t.Skipf("reference guest not built (run make all): %v", err)
		}
	}
	return kernel, initrd
}

// result is one samsara invocation.
type result struct {
	stdout, stderr string
	status         int
	elapsed        time.Duration
}

// samsara runs the binary with args and a timeout.
func samsara(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	cmd := exec.Command(samsaraBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		// SIGQUIT first: the Go runtime prints every goroutine's stack
		// (where samsara was stuck) before exiting.
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		t.Fatalf("samsara %s: no result after %v\nstdout:\n%s\nstderr (with the goroutine dump of SIGQUIT):\n%s", strings.Join(args, " "), timeout, tail(out.String()), errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// tail keeps the end of long output for failure messages.
func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// checkpoints caches one booted checkpoint per vCPU count for the run.
var checkpoints sync.Map // cpus -> *ckptEntry

type ckptEntry struct {
	once sync.Once
	path string
	err  error
	// coldOut is the console output of the cold boot that saved it.
	coldOut string
}

// coldBootTimeout bounds one cold boot of the reference guest (PVM
// emulates every guest kernel instruction; see shared/PLATFORM.md).
const coldBootTimeout = 8 * time.Minute

// bootedCheckpoint returns a checkpoint of the reference guest booted on
// cpus vCPUs, saved when init started. It is cached across test runs in
// $SAMSARA_CACHE keyed by the kernel, initramfs, samsara binary and cpus.
func bootedCheckpoint(t *testing.T, cpus int) string {
	t.Helper()
	kernel, initrd := requireGuest(t)
	v, _ := checkpoints.LoadOrStore(cpus, &ckptEntry{})
	e := v.(*ckptEntry)
	e.once.Do(func() {
		key := hashFiles(t, kernel, initrd, samsaraBin) + fmt.Sprintf("-%dcpu", cpus)
		dir := cacheDir()
		e.path = filepath.Join(dir, "ckpt-"+key+".ckpt")
		if _, err := os.Stat(e.path); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.err = err
			return
		}
		// Saved beside it and linked into place, which never replaces: a
		// second test process booting at the same time (seen: two go
		// test runs here) must not swap the checkpoint under recordings
		// the first one made from it.
		tmp := fmt.Sprintf("%s.%d.tmp", e.path, os.Getpid())
		defer os.Remove(tmp)
		r := samsara(t, coldBootTimeout, "run", "--cpus", fmt.Sprint(cpus), "--kernel", kernel, "--initrd", initrd,
			"--save-checkpoint", tmp, "--", "threads2", "100000")
		e.coldOut = r.stdout
		if r.status != 0 {
			e.err = fmt.Errorf("cold boot on %d vCPUs exited %d\nstdout:\n%s\nstderr:\n%s", cpus, r.status, tail(r.stdout), tail(r.stderr))
			return
		}
		if err := os.Link(tmp, e.path); err != nil && !errors.Is(err, fs.ErrExist) {
			e.err = err
		}
	})
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.path
}

// diskCheckpoint cold-boots the reference guest on cpus vCPUs with the
// disk image img attached (--vm), saves a checkpoint in a test temp
// directory when init starts, lets init run prog (from the cold boot) and
// returns the checkpoint and the boot's console output. It fails the test
// if prog exits non-zero. Not cached: every disk test has its own image,
// and a checkpoint taken with a disk is only valid with that disk.
func diskCheckpoint(t *testing.T, cpus int, img string, prog ...string) (ckpt, out string) {
	t.Helper()
	kernel, initrd := requireGuest(t)
	ckpt = filepath.Join(t.TempDir(), "disk.ckpt")
	args := []string{"run", "--cpus", fmt.Sprint(cpus), "--kernel", kernel, "--initrd", initrd,
		"--vm", img, "--save-checkpoint", ckpt, "--"}
	r := samsara(t, coldBootTimeout, append(args, prog...)...)
	if r.status != 0 {
		t.Fatalf("cold boot on %d vCPUs with disk %s running %v: status %d\nstdout:\n%s\nstderr:\n%s",
			cpus, filepath.Base(img), prog, r.status, tail(r.stdout), tail(r.stderr))
	}
	return ckpt, r.stdout
}

// cacheDir is where booted checkpoints are kept between runs.
func cacheDir() string {
	if d := os.Getenv("SAMSARA_CACHE"); d != "" {
		return filepath.Join(d, "checkpoints")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "samsara", "checkpoints")
}

// hashFiles returns a short SHA-256 over the files' contents.
func hashFiles(t *testing.T, paths ...string) string {
	t.Helper()
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(h, f)
		f.Close()
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// recordAndReplayFlags is recordAndReplayN with recordFlags passed to
// record only (such as --mode parallel, which replay does not take: the
// mode is in the log header) and extra passed to record and replay alike.
func recordAndReplayFlags(t *testing.T, n, cpus int, ckpt string, recordFlags, extra []string, prog ...string) (string, string) {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "rec.zst")
	args := []string{"record", "--cpus", fmt.Sprint(cpus), "--from-checkpoint", ckpt, "-o", rec}
	args = append(append(append(args, recordFlags...), extra...), "--")
	r := samsara(t, resumeTimeout, append(args, prog...)...)
	if r.status != 0 {
		t.Fatalf("record %v %v exited %d\nstdout:\n%s\nstderr:\n%s", recordFlags, prog, r.status, tail(r.stdout), tail(r.stderr))
	}
	for i := 0; i < n; i++ {
		p := samsara(t, resumeTimeout, append([]string{"replay", rec, "--from-checkpoint", ckpt}, extra...)...)
		if p.status != 0 || !strings.Contains(p.stderr, "replay matched") {
			t.Fatalf("replay %d of %v (recorded with %v): status %d\nstderr:\n%s", i+1, prog, recordFlags, p.status, tail(p.stderr))
		}
		if p.stdout != r.stdout {
			t.Fatalf("replay %d of %v (recorded with %v) printed\n%s\nbut the recording printed\n%s", i+1, prog, recordFlags, p.stdout, r.stdout)
		}
	}
	return r.stdout, rec
}

// divergedCopy writes a copy of recording rec in which the first chunk
// with more than two exits ends one exit early, so that its replay must
// diverge there, and returns the copy's path.
func divergedCopy(t *testing.T, rec string) string {
	t.Helper()
	bad, ok := divergedCopyWhere(t, rec, func(c *log.Chunk) bool { return c.Exits > 2 })
	if !ok {
		t.Fatal("no chunk with exits to change")
	}
	return bad
}

// divergedCopyWhere is divergedCopy for the first chunk that pick
// accepts; ok is false when there is none.
func divergedCopyWhere(t *testing.T, rec string, pick func(*log.Chunk) bool) (path string, ok bool) {
	t.Helper()
	raw, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	h, records, err := log.ReadAll(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, r := range records {
		if c, ok := r.(*log.Chunk); ok && c.Exits > 0 && pick(c) && !changed {
			c.Exits-- // the chunk now ends one exit early
			changed = true
		}
	}
	if !changed {
		return "", false
	}
	var buf bytes.Buffer
	w, err := log.NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.zst")
	if err := os.WriteFile(bad, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return bad, true
}
