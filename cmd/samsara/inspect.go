package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/log"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect rec.zst [--json]",
		Short: "Print what a recording holds: header, record counts and bytes by kind, log rate, chunks per vCPU",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := log.SummarizeFile(args[0])
			if s == nil {
				return err
			}
			if asJSON {
				if eerr := printJSON(s); eerr != nil {
					return eerr
				}
			} else {
				printSummary(s)
			}
			if err != nil {
				return fmt.Errorf("%s is damaged (summary above is of its intact prefix): %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

func printSummary(s *log.Summary) {
	h := s.Header
	fmt.Printf("recording:   samsara %s, %s recorder on %s, created %s\n", h.SamsaraVersion, h.Mode, h.Platform, h.Created.Format(time.RFC3339))
	fmt.Printf("machine:     %d vCPUs, %d MiB, program %q\n", h.Config.CPUs, h.Config.MemoryBytes>>20, h.Config.Argv)
	start := "cold boot (kernel " + short(h.Hashes.Kernel) + ", initrd " + short(h.Hashes.Initrd) + ")"
	if h.Hashes.Checkpoint != "" {
		start = "checkpoint " + short(h.Hashes.Checkpoint)
	}
	fmt.Printf("starts from: %s\n", start)
	if h.Hashes.Disk != "" {
		fmt.Printf("disk:        %s\n", short(h.Hashes.Disk))
	}
	fmt.Printf("progress:    %s\n", h.Counter)
	fmt.Printf("size:        %d bytes on disk, %d records, %d bytes uncompressed, %d blocks\n", s.Stats.FileBytes, s.Stats.Records, s.Stats.RawBytes, s.Stats.Blocks)
	kinds := make([]log.Kind, 0, len(s.Stats.ByKind))
	for k := range s.Stats.ByKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	fmt.Println("records by kind:")
	for _, k := range kinds {
		ks := s.Stats.ByKind[k]
		fmt.Printf("  %-16s %8d records %10d bytes\n", k, ks.Records, ks.Bytes)
	}
	fmt.Println("chunks per vCPU:")
	for i, v := range s.VCPUs {
		fmt.Printf("  vcpu %d: %d chunks, %d squashed\n", i, v.Chunks, v.Squashes)
	}
	if len(s.ChunkReasons) > 0 {
		fmt.Println("chunk end reasons:")
		for r, n := range s.ChunkReasons {
			fmt.Printf("  %-12s %d\n", r, n)
		}
	}
	if s.End != nil && s.End.GuestNanos > 0 {
		secs := float64(s.End.GuestNanos) / 1e9
		fmt.Printf("guest time:  %.3f s (virtual time, see README)\n", secs)
		fmt.Printf("log rate:    %.0f bytes per guest second\n", float64(s.Stats.FileBytes)/secs)
	}
	if s.End != nil {
		fmt.Printf("end:         exit status %d (%s)\n", s.End.ExitCode, s.End.Reason)
	} else {
		fmt.Println("end:         missing (the recording was cut short)")
	}
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
