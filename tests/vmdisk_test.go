package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/log"
)

// TestVMDisk is the README's "run your own program from a disk image"
// recipe end to end (issue 5 item 3): a static workload binary is put in
// a folder, build-disk.sh makes an ext2 image of it, and the binary runs
// from /mnt on 2 vCPUs under `run --vm`, `record --vm` and `replay --vm`.
// The recording must name the image's SHA-256, replay must refuse to run
// without the image, and the image must not change.
func TestVMDisk(t *testing.T) {
	requireGuest(t)
	const prog = "blackscholes"
	bin := filepath.Join(buildDir, "workloads", prog)
	raw, err := os.ReadFile(bin)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("workload missing in CI (make all should have built it): %v", err)
		}
		t.Skipf("workloads not built (run make all): %v", err)
	}
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, prog), raw, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("../guest-images/build-disk.sh", img, content).CombinedOutput(); err != nil {
		t.Fatalf("build-disk.sh: %v\n%s", err, out)
	}
	before, err := log.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}

	// An absolute path, so the guest runs the disk's copy and not the
	// initramfs's /bin/blackscholes.
	cmd := []string{"/mnt/" + prog, "2", "tiny"}
	ckpt, boot := diskCheckpoint(t, 2, img, cmd...)
	if !strings.Contains(boot, prog+": ") || !strings.Contains(boot, " ok") {
		t.Fatalf("run --vm of %v printed:\n%s", cmd, boot)
	}

	out, rec := recordAndReplay(t, 2, ckpt, []string{"--vm", img}, cmd...)
	if !strings.Contains(out, prog+": ") || !strings.Contains(out, " ok") {
		t.Fatalf("record --vm of %v printed:\n%s", cmd, out)
	}

	f, err := os.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := log.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.Hashes.Disk != before {
		t.Fatalf("the recording's header names disk %q, the image's SHA-256 is %s", h.Hashes.Disk, before)
	}
	if p := samsara(t, resumeTimeout, "replay", rec, "--from-checkpoint", ckpt); p.status == 0 || !strings.Contains(p.stderr, "--vm") {
		t.Fatalf("replay without --vm: status %d, want a refusal that asks for --vm\nstderr:\n%s", p.status, tail(p.stderr))
	}

	// Both recorders on the same 2-vCPU machine with the disk program of
	// the end-to-end tests (files written on the virtio disk and read
	// back; in parallel mode every virtio notification counts as a write of
	// all of guest memory, so chunks running beside it are squashed).
	for _, mode := range []string{"serialized", "parallel"} {
		t.Run(mode+"/diskrw", func(t *testing.T) {
			out, _ := recordAndReplayFlags(t, replays, 2, ckpt, []string{"--mode", mode}, []string{"--vm", img}, "diskrw")
			if !strings.Contains(out, "diskrw: 262144 bytes") || !strings.Contains(out, " ok") {
				t.Fatalf("diskrw output:\n%s", out)
			}
		})
	}

	after, err := log.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the disk image was written: SHA-256 %s before, %s after", before, after)
	}
}
