package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// rrWorkloads are the guest programs of the record/replay benchmark: the
// issue-3 test programs and the PARSEC-style workloads at their tiny size.
var rrWorkloads = [][]string{
	{"race", "200000"},
	{"timers"},
	{"blackscholes", "2", "tiny"},
	{"swaptions", "2", "tiny"},
	{"streamcluster", "2", "tiny"},
	{"canneal", "2", "tiny"},
	{"fluidanimate", "2", "tiny"},
	{"dedup", "2", "tiny"},
	{"raytrace", "2", "tiny"},
}

// benchRR boots once to a checkpoint on 2 vCPUs, then for each workload
// times `run`, `record` and `replay` from that checkpoint in one run.
func benchRR(samsara, kernel, initrd string) {
	dir, err := os.MkdirTemp("", "samsara-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	ckpt := filepath.Join(dir, "boot.ckpt")
	if out, err := exec.Command(samsara, "run", "--cpus", "2", "--kernel", kernel, "--initrd", initrd, "--save-checkpoint", ckpt, "--", "true").CombinedOutput(); err != nil {
		fail(fmt.Errorf("boot to a checkpoint: %v\n%s", err, out))
	}
	fmt.Println("| workload (2 vCPUs) | run | record | replay | record/run | log bytes | guest time | log rate (MB per guest s) | replay |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, w := range rrWorkloads {
		rec := filepath.Join(dir, w[0]+".zst")
		run := timed(samsara, append([]string{"run", "--cpus", "2", "--from-checkpoint", ckpt, "--"}, w...)...)
		record := timed(samsara, append([]string{"record", "--cpus", "2", "--from-checkpoint", ckpt, "-o", rec, "--"}, w...)...)
		replay := timed(samsara, "replay", rec, "--from-checkpoint", ckpt)
		size := int64(0)
		if st, err := os.Stat(rec); err == nil {
			size = st.Size()
		}
		verdict := "matched"
		if replay.err != nil {
			verdict = "FAILED: " + replay.err.Error()
		}
		rate, ratio, guest := "-", "-", "-"
		if record.err == nil && run.err == nil {
			ratio = fmt.Sprintf("%.2fx", record.d.Seconds()/run.d.Seconds())
		}
		if ns := guestNanos(samsara, rec); ns > 0 {
			guest = fmt.Sprintf("%.2f s", float64(ns)/1e9)
			rate = fmt.Sprintf("%.4f", float64(size)/1e6/(float64(ns)/1e9))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %d | %s | %s | %s |\n", strings.Join(w, " "), run, record, replay, ratio, size, guest, rate, verdict)
	}
}

// guestNanos reads the guest time a recording covers (inspect --json).
func guestNanos(samsara, rec string) uint64 {
	out, err := exec.Command(samsara, "inspect", "--json", rec).Output()
	if err != nil {
		return 0
	}
	var s struct {
		End *struct {
			GuestNanos uint64 `json:"guest_nanos"`
		}
	}
	if json.Unmarshal(out, &s) != nil || s.End == nil {
		return 0
	}
	return s.End.GuestNanos
}

// timed runs a command to completion and returns its wall time.
func timed(name string, args ...string) timing {
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return timing{err: fmt.Errorf("%v: %s", err, lines[len(lines)-1])}
	}
	return timing{d: d}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
