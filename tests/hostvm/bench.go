package main

// hostvm bench: what the emulated host costs, in one run. It prints the
// host VM's boot time (QEMU start to /dev/kvm ready) and, inside the host,
// the checkpoint resume benchmark of tests/bench (`bench resume`): the
// time to resume the reference guest from the same checkpoint in format
// version 1 (zstd, SHA-256; before the resume work of issue 10) and in the
// current format, side by side, plus a record and a replay of `true` from
// the current format with samsara's own account of the time outside the
// guest.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func cmdBench(args []string) (int, error) {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	var o options
	o.register(fs, 30*time.Minute)
	runs := fs.Int("runs", 5, "timed runs of each command per checkpoint format")
	fs.Parse(args)
	w, p, err := prepare(o)
	if err != nil {
		return 0, err
	}
	defer w.close()
	bench := filepath.Join(w.dir, "bench")
	if err := w.goBuild("build", "-o", bench, "./tests/bench"); err != nil {
		return 0, err
	}
	p.Files["hostvm/bin/bench"] = bench
	// busybox's date has no %N: time from /proc/uptime (10 ms steps).
	p.Script = fmt.Sprintf(`set -e
bench -samsara /hostvm/bin/samsara -build /hostvm/build -resume-runs %d resume
samsara run --cpus 2 --save-checkpoint /tmp/b.ckpt -- true >/dev/null
t0=$(cut -d' ' -f1 /proc/uptime)
samsara record --cpus 2 --from-checkpoint /tmp/b.ckpt -o /tmp/b.zst -- true >/dev/null
t1=$(cut -d' ' -f1 /proc/uptime)
samsara replay /tmp/b.zst --from-checkpoint /tmp/b.ckpt >/dev/null
t2=$(cut -d' ' -f1 /proc/uptime)
awk -v a=$t0 -v b=$t1 -v c=$t2 'BEGIN { printf "whole commands from the current format (2 vCPUs): record -- true %%.2f s, replay %%.2f s\n", b-a, c-b }'
`, *runs)
	res, err := w.boot(p, os.Stdout)
	if err != nil {
		return 0, err
	}
	fmt.Printf("\nhost VM (%s, QEMU TCG -cpu max, %d CPUs, %d MiB): /dev/kvm ready %.1f s after QEMU started; whole run %.0f s\n",
		w.kernel.Package, o.cpus, o.memMiB, res.Ready.Seconds(), res.Total.Seconds())
	return res.Status, nil
}
