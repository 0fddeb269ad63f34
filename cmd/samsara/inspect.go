package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	var daemonSock string
	cmd := &cobra.Command{
		Use:   "inspect rec.zst [--json] | inspect --daemon SOCKET ID [--json]",
		Short: "Print what a recording holds: header, record counts and bytes by kind, log rate, chunks per vCPU, parallel recorder counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if daemonSock != "" {
				return inspectViaDaemon(daemonSock, args[0], asJSON)
			}
			s, err := log.SummarizeFile(args[0])
			if s == nil {
				return err
			}
			if asJSON {
				if eerr := printJSON(s); eerr != nil {
					return eerr
				}
			} else {
				printSummary(os.Stdout, s)
			}
			if err != nil {
				return fmt.Errorf("%s is damaged (summary above is of its intact prefix): %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	addDaemonFlag(cmd, &daemonSock)
	return cmd
}

// printSummary writes the human-readable summary of a recording to w.
func printSummary(w io.Writer, s *log.Summary) {
	h := s.Header
	fmt.Fprintf(w, "recording:   samsara %s, %s recorder on %s, created %s\n", h.SamsaraVersion, h.Mode, h.Platform, h.Created.Format(time.RFC3339))
	argv, env := vmm.SplitGuestArgv(h.Config.Argv)
	fmt.Fprintf(w, "machine:     %d vCPUs, %d MiB, program %q\n", h.Config.CPUs, h.Config.MemoryBytes>>20, argv)
	if env.Cwd != "" || len(env.Env) > 0 || env.Stdin != "" {
		fmt.Fprintf(w, "environment: cwd %q, env %q, stdin %q\n", env.Cwd, env.Env, env.Stdin)
	}
	start := "cold boot (kernel " + short(h.Hashes.Kernel) + ", initrd " + short(h.Hashes.Initrd) + ")"
	if h.Hashes.Checkpoint != "" {
		start = "checkpoint " + short(h.Hashes.Checkpoint)
	}
	fmt.Fprintf(w, "starts from: %s\n", start)
	if h.Hashes.Disk != "" {
		fmt.Fprintf(w, "disk:        %s\n", short(h.Hashes.Disk))
	}
	fmt.Fprintf(w, "progress:    %s\n", h.Counter)
	fmt.Fprintf(w, "size:        %d bytes on disk, %d records, %d bytes uncompressed, %d blocks\n", s.Stats.FileBytes, s.Stats.Records, s.Stats.RawBytes, s.Stats.Blocks)
	kinds := make([]log.Kind, 0, len(s.Stats.ByKind))
	for k := range s.Stats.ByKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	fmt.Fprintln(w, "records by kind:")
	for _, k := range kinds {
		ks := s.Stats.ByKind[k]
		fmt.Fprintf(w, "  %-16s %8d records %10d bytes\n", k, ks.Records, ks.Bytes)
	}
	fmt.Fprintln(w, "chunks per vCPU:")
	for i, v := range s.VCPUs {
		fmt.Fprintf(w, "  vcpu %d: %d chunks, %d squashed\n", i, v.Chunks, v.Squashes)
	}
	if len(s.ChunkReasons) > 0 {
		fmt.Fprintln(w, "chunk end reasons:")
		for r, n := range s.ChunkReasons {
			fmt.Fprintf(w, "  %-12s %d\n", r, n)
		}
	}
	if s.Recorder != nil {
		printRecorderStats(w, s.Recorder)
	}
	if s.End != nil && s.End.GuestNanos > 0 {
		secs := float64(s.End.GuestNanos) / 1e9
		fmt.Fprintf(w, "guest time:  %.3f s (virtual time, see README)\n", secs)
		fmt.Fprintf(w, "log rate:    %.0f bytes per guest second\n", float64(s.Stats.FileBytes)/secs)
	}
	if s.End != nil {
		fmt.Fprintf(w, "end:         exit status %d (%s)\n", s.End.ExitCode, s.End.Reason)
	} else {
		fmt.Fprintln(w, "end:         missing (the recording was cut short)")
	}
}

// printRecorderStats writes the parallel recorder's counters: per vCPU how
// often its chunks committed, were squashed (and what fraction of its work
// was done twice because of it) or ran alone, then how large the committed
// chunks were.
func printRecorderStats(w io.Writer, r *log.RecorderStats) {
	fmt.Fprintf(w, "parallel recorder: tracker %s, work unit = guest kernel instructions + 1 per chunk\n", r.Tracker)
	fmt.Fprintf(w, "  %-6s %10s %10s %8s %10s %12s\n", "vcpu", "commits", "squashes", "squash%", "exclusive", "re-executed")
	var total log.RecorderVCPUStats
	row := func(name string, v log.RecorderVCPUStats) {
		fmt.Fprintf(w, "  %-6s %10d %10d %8s %10d %12s\n", name, v.Commits, v.Squashes,
			percent(v.Squashes, v.Commits+v.Squashes), v.ExclusiveRuns, percent(v.ReexecutedWork, v.CommittedWork))
	}
	for i, v := range r.VCPUs {
		row(strconv.Itoa(i), v)
		total.Commits += v.Commits
		total.Squashes += v.Squashes
		total.ExclusiveRuns += v.ExclusiveRuns
		total.CommittedWork += v.CommittedWork
		total.ReexecutedWork += v.ReexecutedWork
	}
	row("all", total)
	fmt.Fprintln(w, "  (squash% = squashes / (commits + squashes); re-executed = squashed work / committed work)")
	n := r.ChunkSizes.Count()
	fmt.Fprintf(w, "chunk sizes: %d committed chunks, work units -> chunks\n", n)
	for i, c := range r.ChunkSizes {
		if c == 0 {
			continue
		}
		lo, hi := log.SizeBucketRange(i)
		rng := strconv.FormatUint(lo, 10)
		if hi != lo {
			rng += ".." + strconv.FormatUint(hi, 10)
		}
		fmt.Fprintf(w, "  %-24s %10d %8s\n", rng, c, percent(c, n))
	}
}

// percent formats part/whole as a percentage, "-" when whole is 0.
func percent(part, whole uint64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// printJSON writes v to stdout as indented JSON (inspect and probe --json).
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
