package main

// go run ./tests/bench resume: how long resuming from a checkpoint takes
// in each checkpoint format. It boots the reference guest on -resume-cpus
// vCPUs to a checkpoint once (or takes -checkpoint PATH), rewrites that
// checkpoint in format versions 1 (zstd + SHA-256), 2 and the current 3
// (vmm.ConvertCheckpoint), and times, alternating between them,
// `samsara run --from-checkpoint F -- true` (process start to the guest's
// power-off: load the file, restore, run `true`) and
// `samsara record --from-checkpoint F -- true` (which also names the
// checkpoint in the recording header). It prints the median and the
// fastest of -resume-runs runs of each, side by side.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

var (
	resumeCheckpoint = flag.String("checkpoint", "", "resume: use this checkpoint instead of booting one (its vCPU count must be -resume-cpus)")
	resumeCPUs       = flag.Int("resume-cpus", 2, "resume: vCPUs of the guest")
	resumeRuns       = flag.Int("resume-runs", 5, "resume: timed runs of each command per format (after one untimed)")
)

func benchResume(samsara, kernel, initrd string, timeout time.Duration) {
	dir, err := os.MkdirTemp("", "bench-resume-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	cpus := fmt.Sprint(*resumeCPUs)
	src := *resumeCheckpoint
	if src == "" {
		src = filepath.Join(dir, "boot.ckpt")
		fmt.Fprintf(os.Stderr, "booting the reference guest on %s vCPUs to a checkpoint...\n", cpus)
		o, out := runCmd(timeout, samsara, "run", "--cpus", cpus, "--kernel", kernel, "--initrd", initrd, "--save-checkpoint", src, "--", "true")
		if !o.ok() {
			fail(fmt.Errorf("boot to a checkpoint: %s\n%s", o.Err, out))
		}
	}
	formats := []struct {
		name    string
		version uint32
		path    string
	}{
		{"v1 (zstd, SHA-256)", 1, filepath.Join(dir, "v1.ckpt")},
		{"v2 (pages uncompressed, XXH64 tree, gob)", 2, filepath.Join(dir, "v2.ckpt")},
		{"v3 (as v2, own structs in JSON)", 3, filepath.Join(dir, "v3.ckpt")},
	}
	cmds := []struct {
		name string
		args func(ck string) []string
	}{
		{"run -- true", func(ck string) []string {
			return []string{"run", "--cpus", cpus, "--from-checkpoint", ck, "--", "true"}
		}},
		{"record -- true", func(ck string) []string {
			return []string{"record", "--cpus", cpus, "--from-checkpoint", ck, "-o", filepath.Join(dir, "rec.zst"), "--", "true"}
		}},
	}
	sizes := make([]int64, len(formats))
	for i, f := range formats {
		if err := vmm.ConvertCheckpoint(src, f.path, f.version); err != nil {
			fail(err)
		}
		st, err := os.Stat(f.path)
		if err != nil {
			fail(err)
		}
		sizes[i] = st.Size()
	}
	// times[c][f] are the wall times of command c on format f.
	times := make([][][]time.Duration, len(cmds))
	for c, cmd := range cmds {
		times[c] = make([][]time.Duration, len(formats))
		for run := 0; run <= *resumeRuns; run++ {
			for f, fm := range formats {
				start := time.Now()
				o, out := runCmd(timeout, samsara, cmd.args(fm.path)...)
				d := time.Since(start)
				if !o.ok() {
					fail(fmt.Errorf("%s on %s: %s\n%s", cmd.name, fm.name, o.Err, out))
				}
				if run > 0 { // the first run of each only warms the page cache
					times[c][f] = append(times[c][f], d)
				}
			}
		}
	}
	fmt.Printf("Resume from a checkpoint of the reference guest on %s vCPUs, %d runs each (wall time, median / fastest)\n\n", cpus, *resumeRuns)
	fmt.Print("| format | file size |")
	for _, c := range cmds {
		fmt.Printf(" %s |", c.name)
	}
	fmt.Print("\n|---|---|")
	for range cmds {
		fmt.Print("---|")
	}
	fmt.Println()
	for f, fm := range formats {
		fmt.Printf("| %s | %.1f MiB |", fm.name, float64(sizes[f])/(1<<20))
		for c := range cmds {
			ts := slices.Clone(times[c][f])
			slices.Sort(ts)
			fmt.Printf(" %.3f s / %.3f s |", ts[len(ts)/2].Seconds(), ts[0].Seconds())
		}
		fmt.Println()
	}
}
