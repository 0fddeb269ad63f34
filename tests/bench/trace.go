package main

// go run ./tests/bench trace: what expanding a recording into an
// execution trace costs (`samsara trace`, issue 16). It boots the
// reference guest on 2 vCPUs to a checkpoint (or takes -checkpoint PATH),
// records -trace-workload from it, and expands the recording once per
// format, printing, in one table, the expansion speed (traced
// instructions per second of expansion) and the trace's bytes per
// instruction next to the recording's own size and log rate: how much
// the log compresses the trace (ReTrace's comparison).

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

var traceWorkload = flag.String("trace-workload", "threads2 1000", "trace: the program to record and expand")

// traceSummary matches the summary line `samsara trace` prints.
var traceSummary = regexp.MustCompile(`trace matched the recording: (\d+) instructions, \d+ of them user .* (\d+) bytes \(([\d.]+) bytes/instruction\); ([\d.]+)s, (\d+) instructions/s`)

func benchTrace(samsara, kernel, initrd string, timeout time.Duration) {
	dir, err := os.MkdirTemp("", "bench-trace-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	ckpt := benchCheckpoint(samsara, kernel, initrd, dir, timeout)
	rec := filepath.Join(dir, "rec.zst")
	benchRecord(samsara, ckpt, rec, *traceWorkload, timeout)
	st, err := os.Stat(rec)
	if err != nil {
		fail(err)
	}
	starts := chunkGuestStarts(rec)
	guest := starts[len(starts)-1]
	fmt.Printf("recording: %s on 2 vCPUs, %d chunks, %.2f s of guest time, %d bytes (%.0f bytes per guest second)\n\n",
		*traceWorkload, len(starts)-1, guest.Seconds(), st.Size(), float64(st.Size())/guest.Seconds())
	fmt.Println("| format | kernel instructions | expansion | instructions/s | trace bytes | bytes/instruction | trace/log size |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, f := range []string{"native", "text", "champsim"} {
		out := filepath.Join(dir, "trace-"+f)
		o, text := runCmd(timeout, samsara, "trace", rec, "--from-checkpoint", ckpt, "-o", out, "--format", f)
		m := traceSummary.FindStringSubmatch(text)
		if !o.ok() || m == nil {
			fail(fmt.Errorf("trace --format %s: %s\n%s", f, o.Err, text))
		}
		bytes, _ := strconv.ParseFloat(m[2], 64)
		fmt.Printf("| %s | %s | %s s | %s | %s | %s | %.0fx |\n", f, m[1], m[4], m[5], m[2], m[3], bytes/float64(st.Size()))
		os.RemoveAll(out)
	}
	fmt.Println("\nUser code is not traced under PVM (it cannot be single-stepped); the log also covers it.")
}
