package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// renderMarkdown writes the report as results/bench.md shows it.
func renderMarkdown(r *benchReport) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	p("# samsara and QEMU record/replay, one run\n\n")
	p("Produced by `go run ./tests/bench report` on %s in %s.\n", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	p("Host: %s. %s. Every workload runs as `PROG THREADS %s` with THREADS = vCPUs; ", r.Host, r.QEMUVersion, workloadSize)
	p("both VMMs boot the same `build/vmlinux` and `build/initramfs.cpio` with the same kernel command line (`samsara cmdline`). ")
	p("Timings are single runs on a 2-core machine shared with other work: expect noise of tens of percent on the short ones.\n\n")
	p("![Recording overhead per workload](overhead.svg)\n\n")

	squashHdr := "squash rate"
	p("| workload | VMM | vCPUs | run | record | replay | record/run | log bytes | log MB/s | log bytes per guest s | guest time | %s |\n", squashHdr)
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.Workloads {
		for _, s := range w.Samsara {
			p("| %s | samsara, serialized recorder | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				w.Name, s.VCPUs, cell(s.Run), cell(s.Record), verdict(s.Replay, "matched"), ratioCell(s.Record, s.Run),
				bytesCell(s.LogBytes, s.Record), mbPerSec(s.LogBytes, s.Record), perGuestSec(s.LogBytes, s.GuestNanos, s.Record),
				guestCell(s.GuestNanos, s.Record), squashCell(r.Parallel, s))
		}
		q := w.QEMU
		p("| %s | QEMU TCG, -icount rr | 1 | %s | %s | %s | %s | %s | %s | %s | %s | n/a (one vCPU) |\n",
			w.Name, cell(q.Plain1), cell(q.Record1), verdict(q.Replay1, "same output"), qemuRatio(q, r.QEMUBoot),
			bytesCell(q.LogBytes, q.Record1), mbPerSec(q.LogBytes, q.Record1), perGuestSec(q.LogBytes, q.GuestNanos, q.Record1),
			guestCell(q.GuestNanos, q.Record1))
		p("| %s | QEMU TCG, -icount rr | 2 | %s | %s | - | - | - | - | - | - | - |\n", w.Name, cell(q.Plain2), refusalCell(q.Record2))
	}
	p("\n")

	if r.Parallel {
		p("### samsara parallel recorder\n\n")
		p("%s", nativeSentence(r.Native))
		p("| workload | vCPUs | record --mode parallel | replay | parallel/serialized record | squashed chunks |\n|---|---|---|---|---|---|\n")
		for _, w := range r.Workloads {
			for _, s := range w.Samsara {
				p("| %s | %d | %s | %s | %s | %d of %d |\n", w.Name, s.VCPUs, cell(s.Parallel), verdict(s.ParallelReplay, "matched"),
					ratioCell(s.Parallel, s.Record), s.Squashes, s.Chunks)
			}
		}
		p("\n")
	}

	p("%s", syncHeavyTable(r))
	p("%s", profileTable(r))

	p("%s", userHeavyTable(r))

	bq := r.QEMUBoot
	p("### QEMU boot only (init runs `true`)\n\n")
	p("| -accel tcg, 1 vCPU | -accel tcg, 2 vCPUs | rr=record, 1 vCPU | rr=replay, 1 vCPU | log bytes | guest time |\n|---|---|---|---|---|---|\n")
	p("| %s | %s | %s | %s | %s | %s |\n\n", cell(bq.Plain1), cell(bq.Plain2), cell(bq.Record1), verdict(bq.Replay1, "same output"),
		bytesCell(bq.LogBytes, bq.Record1), guestCell(bq.GuestNanos, bq.Record1))

	p("### QEMU -enable-kvm (no recording), reference\n\n")
	if len(r.KVM) == 0 {
		p("Not measured in this run (-kvm=false).\n\n")
	} else {
		p("| vCPUs | workload | result |\n|---|---|---|\n")
		for _, k := range r.KVM {
			res := cell(k.Outcome)
			if k.Outcome.Err != "" {
				res = fmt.Sprintf("failed after %.1f s: %s", k.Outcome.Wall.Seconds(), md(k.Outcome.Err))
			}
			p("| %d | %s | %s |\n", k.VCPUs, k.Workload, res)
		}
		p("\n")
	}

	p("%s", numbersNotes(r))
	if len(r.Trackers) > 0 {
		p("\n### Page trackers of the parallel recorder: cost per chunk against pages touched\n\n")
		p("`go test -run XXX -bench BenchmarkChunk -benchtime 20x ./internal/ept/`: a one-vCPU guest touches N consecutive pages at CPL3 (a quarter written) in a chunk. *run-µs/page* is the guest's first-touch cost, *end-µs* the page-set harvest, *commit|discard-µs* the write-back or the drop, *read-pages*/*write-pages* the sets found (fault-around inflates the read set of `private-pagemap-faultaround`).\n\n```\n")
		for _, l := range r.Trackers {
			p("%s\n", l)
		}
		p("```\n")
	}
	return b.String()
}

// cell is a measured time, or why it failed, for a table cell.
func cell(o outcome) string {
	switch {
	case !o.Ran:
		return "-"
	case o.Err != "":
		return "failed: " + md(o.Err)
	}
	return fmt.Sprintf("%.2f s", o.Wall.Seconds())
}

// refusalCell shows QEMU's refusal of an -smp 2 recording as the refusal
// it is (with the time QEMU took to refuse), any other failure as one.
func refusalCell(o outcome) string {
	if r, ok := strings.CutPrefix(o.Err, refusedPrefix); ok {
		return fmt.Sprintf("refused after %.2f s: \"%s\"", o.Wall.Seconds(), md(r))
	}
	return cell(o)
}

// verdict is a replay's time and word, or its failure.
func verdict(o outcome, word string) string {
	if !o.ok() {
		return cell(o)
	}
	return fmt.Sprintf("%.2f s, %s", o.Wall.Seconds(), word)
}

// ratioCell is a/b as "1.23x".
func ratioCell(a, b outcome) string {
	v := ratio(a, b)
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// qemuNoise is the smallest workload-only time (whole run minus boot) the
// table divides by: below it, the difference is within the run-to-run
// noise of a QEMU start on this shared 2-core machine (measured spread of
// identical boot-only runs: 1.89-2.32 s recording, 0.68-1.16 s plain).
const qemuNoise = 400 * time.Millisecond

// qemuRatio is QEMU's record/plain ratio, whole run and boot subtracted.
func qemuRatio(q, boot qemuResult) string {
	whole := ratioCell(q.Record1, q.Plain1)
	if whole == "-" {
		return whole
	}
	sub := "n/a"
	if boot.Record1.ok() && boot.Plain1.ok() {
		rec, run := q.Record1.Wall-boot.Record1.Wall, q.Plain1.Wall-boot.Plain1.Wall
		if rec > qemuNoise && run > qemuNoise {
			sub = fmt.Sprintf("%.2fx", rec.Seconds()/run.Seconds())
		}
	}
	return fmt.Sprintf("%s (%s)", whole, sub)
}

// bytesCell is a log size, "-" when the recording failed.
func bytesCell(n int64, rec outcome) string {
	if !rec.ok() {
		return "-"
	}
	return fmt.Sprint(n)
}

// mbPerSec is log bytes per second of recording wall time, in MB/s.
func mbPerSec(n int64, rec outcome) string {
	if !rec.ok() || rec.Wall <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3g", float64(n)/1e6/rec.Wall.Seconds())
}

// perGuestSec is log bytes per second of guest time.
func perGuestSec(n int64, guestNanos uint64, rec outcome) string {
	if !rec.ok() || guestNanos == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(n)/(float64(guestNanos)/1e9))
}

// guestCell is the guest time a recording covers.
func guestCell(guestNanos uint64, rec outcome) string {
	if !rec.ok() || guestNanos == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f s", float64(guestNanos)/1e9)
}

// guestRAMMiB is samsara's default guest memory (cmd/samsara, --mem),
// which every benchmark run uses.
const guestRAMMiB = 256

// rssCell shows peak resident sets in MiB, "-" for a run that failed.
func rssCell(os ...outcome) string {
	parts := make([]string, len(os))
	for i, o := range os {
		parts[i] = "-"
		if o.ok() && o.MaxRSSKiB > 0 {
			parts[i] = fmt.Sprint(o.MaxRSSKiB / 1024)
		}
	}
	return strings.Join(parts, " / ")
}

// squashCell is the parallel recorder's squash rate, or why there is none.
func squashCell(parallel bool, s samsaraResult) string {
	if !parallel {
		return "n/a (serialized)"
	}
	if !s.Parallel.ok() || s.Chunks == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(s.Squashes)/float64(s.Chunks))
}

// md makes text safe inside a markdown table cell.
func md(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// profileTable is the split of each recording's wall time (record
// --profile-json, issue 18), the vCPUs' mean share per phase.
func profileTable(r *benchReport) string {
	var b strings.Builder
	row := func(name string, n int, mode string, prof *recordProfile) {
		if prof == nil {
			return
		}
		fmt.Fprintf(&b, "| %s | %d | %s |", md(name), n, mode)
		for _, ph := range phases {
			fmt.Fprintf(&b, " %.1f%% |", prof.share(ph))
		}
		b.WriteString("\n")
	}
	for i, set := range [][]workloadResult{r.Workloads, r.UserHeavy} {
		size := []string{workloadSize, userHeavySize}[i]
		for _, w := range set {
			for _, s := range w.Samsara {
				row(w.Name+" "+size, s.VCPUs, "serialized", s.RecordProfile)
				row(w.Name+" "+size, s.VCPUs, "parallel", s.ParallelProfile)
			}
		}
	}
	if b.Len() == 0 {
		return ""
	}
	hdr := "### Where recording time goes (`record --profile`)\n\nEach vCPU's wall time by phase, the mean over the vCPUs (README, \"Profile of a recording\").\n\n"
	hdr += "| workload | vCPUs | recorder | " + strings.Join(phases, " | ") + " |\n|---|---|---|" + strings.Repeat("---|", len(phases)) + "\n"
	return hdr + b.String() + "\n"
}

// syncHeavyTable is issue 18's sync-heavy runs, a row per vCPU count:
// each recorder against run (its target: at most 3x).
func syncHeavyTable(r *benchReport) string {
	if len(r.SyncHeavy) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Sync-heavy runs (`PROG THREADS %s`)\n\n", workloadSize)
	b.WriteString("Futex wake-ups, pipe round trips and process creation, almost no computation (guest-images/workloads/README.md, \"The sync-heavy set\"). Issue 18's target: each recorder within 3x of run.\n\n")
	b.WriteString("| workload | vCPUs | run | serialized record | record/run | its replay | parallel record | parallel/run | its replay | squashed chunks |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.SyncHeavy {
		for _, s := range w.Samsara {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %d of %d |\n", md(w.Name), s.VCPUs, cell(s.Run), cell(s.Record), ratioCell(s.Record, s.Run),
				verdict(s.Replay, "matched"), cell(s.Parallel), ratioCell(s.Parallel, s.Run), verdict(s.ParallelReplay, "matched"), s.Squashes, s.Chunks)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// userHeavyTable is the user-heavy runs (userHeavyWorkloads), a row per
// vCPU count.
func userHeavyTable(r *benchReport) string {
	if len(r.UserHeavy) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### User-heavy runs (`PROG N %s` on N vCPUs)\n\n", userHeavySize)
	p("The tiny runs above spend most of their time in the emulated guest kernel; these spend most of it in guest user code, which runs natively. ")
	p("*parallel, before* is the parallel recorder with its privilege-change chunk ends and early conflict checks off (`record --privilege-ends=false --early-conflicts=false`).\n\n")
	p("*peak RSS* is each process's peak resident memory (run / serialized record / parallel record): the guest RAM the guest touched, mapped from one memfd, plus the VMM; ")
	p("the parallel recorder's views add what chunks touch, dropped at every chunk end. The guest has %d MiB of RAM.\n\n", guestRAMMiB)
	p("| workload | vCPUs | run | serialized record | record/run | parallel record | parallel/serialized | squashed chunks | parallel, before | squashed chunks before | replay of the parallel log | peak RSS, MiB |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.UserHeavy {
		for _, s := range w.Samsara {
			p("| %s | %d | %s | %s | %s | %s | %s | %d of %d | %s | %d of %d | %s | %s |\n", w.Name, s.VCPUs, cell(s.Run), cell(s.Record), ratioCell(s.Record, s.Run),
				cell(s.Parallel), ratioCell(s.Parallel, s.Record), s.Squashes, s.Chunks,
				cell(s.Baseline), s.BaselineSquashes, s.BaselineChunks, verdict(s.ParallelReplay, "matched"),
				rssCell(s.Run, s.Record, s.Parallel))
		}
	}
	p("\n")
	return b.String()
}

// numbersNotes is the report's "What the numbers cover".
func numbersNotes(r *benchReport) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### What the numbers cover\n\n")
	p("- **samsara** times are wall times of one `samsara run`, `record` or `replay` process started from a checkpoint saved at the end of the boot (`run --save-checkpoint`, one per vCPU count): they include loading the checkpoint and the guest's power-off, not the boot. *replay* says `matched` only when `samsara replay` exited 0 and printed \"%s\".\n", replayMatched)
	p("- **QEMU** times are wall times of one `qemu-system-x86_64` process from start to exit: SeaBIOS, the kernel boot, the workload and the reset (`-no-reboot`). *run* is `-accel tcg` without recording. The boot-only table above gives the boot's share; QEMU's *record/run* shows the whole-run ratio and, in parentheses, the ratio with each mode's boot-only time subtracted (workload only; `n/a` when the difference is within noise). QEMU *replay* says `same output` when the replayed guest printed the same workload line and exit status 0.\n")
	p("- *log bytes* is the recording file (samsara: the `.zst` log; QEMU: the `rrfile`). *log MB/s* is log bytes per second of recording wall time. *log bytes per guest s* divides by the guest time the recording covers: samsara's virtual clock at power-off (`samsara inspect --json`, from the checkpoint; it advances per exit and preemption, not with guest user instructions, so it overstates the rate of compute-heavy programs) and QEMU's last kernel log timestamp (the `-icount` virtual clock at reset, boot included).\n")
	if r.Parallel {
		p("- *squash rate* is the parallel recorder's squashed chunks over all its chunks (`samsara inspect --json`).\n")
	} else {
		p("- *squash rate*: the only recorder `samsara record` offers in this build is `--mode serialized` (one vCPU at a time), which never squashes: n/a. The column fills in when `record --help` lists a parallel mode.\n")
	}
	p("- QEMU's log size varies from run to run: with `-icount shift=auto` the virtual clock follows the host's speed, so host load changes how much guest time (timer events) a run records; three boot-only recordings in a row measured 8.4, 11.3 and 10.5 MB.\n")
	p("- QEMU 7.2 refuses record/replay with `-smp 2`: its 2-vCPU row shows the refusal from this run; the 2-vCPU *run* is plain TCG.\n")
	p("- `qemu -enable-kvm` is attempted once per vCPU count with the first workload: under PVM it stops, before init runs any program, on an instruction KVM's emulator rejects (QEMU then pauses the VM; the time is until its error). samsara skips that instruction in userspace.\n")
	p("- Under PVM samsara runs guest user code natively but emulates every guest kernel instruction; TCG translates both. Small (tiny) workloads are kernel-heavy, so samsara's absolute times are not a measure of its recorder.\n")
	return b.String()
}
