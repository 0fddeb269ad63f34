package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestEnvShm is issue 17's guest environment end to end: a user's
// program on a disk image (tests/testdata/shmenv.c) runs with --cwd,
// --env and --stdin (a file on the image), shares memory between two
// threads through /dev/shm (mkstemp there and shm_open, MAP_SHARED), and
// records and replays matched with both recorders on 2 vCPUs. Replay takes
// no environment flags: the settings are in the recording's argv.
func TestGuestEnvShm(t *testing.T) {
	requireGuest(t)
	if _, err := exec.LookPath("musl-gcc"); err != nil {
		t.Skipf("needs musl-gcc to build the test program (apt-get install musl-tools): %v", err)
	}
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("musl-gcc", "-static", "-O2", "-march=x86-64", "-pthread",
		"-o", filepath.Join(content, "shmenv"), "testdata/shmenv.c").CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(content, "input.txt"), []byte("line from the disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("../guest-images/build-disk.sh", img, content).CombinedOutput(); err != nil {
		t.Fatalf("build-disk.sh: %v\n%s", err, out)
	}
	envFlags := []string{"--cwd", "/tmp", "--env", "SHMENV_GREETING=hello world", "--stdin", "/mnt/input.txt"}
	// The console ends lines with CRLF (the tty's ONLCR).
	want := []string{"cwd /tmp\r\n", "greeting hello world\r\n", "stdin line from the disk\r\n", "mkstemp 40000 shm_open 40000\r\n", "shmenv: ok\r\n"}
	check := func(what, out string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("%s printed no %q:\n%s", what, w, out)
			}
		}
	}

	kernel, initrd := requireGuest(t)
	ckpt := filepath.Join(dir, "disk.ckpt")
	args := append([]string{"run", "--cpus", "2", "--kernel", kernel, "--initrd", initrd, "--vm", img,
		"--save-checkpoint", ckpt}, envFlags...)
	r := samsara(t, coldBootTimeout, append(args, "--", "/mnt/shmenv")...)
	if r.status != 0 {
		t.Fatalf("run: status %d\nstdout:\n%s\nstderr:\n%s", r.status, tail(r.stdout), tail(r.stderr))
	}
	check("run", r.stdout)
	for _, mode := range []string{"serialized", "parallel"} {
		t.Run(mode, func(t *testing.T) {
			out, _ := recordAndReplayFlags(t, 1, 2, ckpt, append([]string{"--mode", mode}, envFlags...),
				[]string{"--vm", img}, "/mnt/shmenv")
			check("record --mode "+mode, out)
		})
	}
}
