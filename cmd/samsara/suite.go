package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/suite"
)

func newSuiteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "suite",
		Short: "Run a CI regression suite of workloads (JUnit XML, JSON figures, Markdown report)",
	}
	cmd.AddCommand(newSuiteRunCmd(), newSuiteCompareCmd())
	return cmd
}

func newSuiteCompareCmd() *cobra.Command {
	var out string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "compare NEW.json OLD.json [-o DIR]",
		Short: "Compare a suite run's results.json against a baseline without running anything",
		Long: `Compares the figures of NEW.json (a suite run's results.json) against
OLD.json as suite run --baseline does, and with -o writes junit.xml,
results.json, report.md and chart.svg of the comparison to DIR. Exits 1 if
a case failed (in NEW.json already, or by a regression), 0 otherwise.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := suite.ReadResults(args[0])
			if err != nil {
				return err
			}
			base, err := suite.ReadResults(args[1])
			if err != nil {
				return err
			}
			suite.Compare(r, base)
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return fmt.Errorf("suite compare: %w", err)
				}
				if err := suite.WriteReports(r, out); err != nil {
					return err
				}
			}
			if !quiet {
				printSuiteSummary(os.Stdout, r, out)
			}
			if r.Failed() > 0 {
				return &exitError{status: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the comparison's reports to this folder")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	return cmd
}

// suiteFlags are `samsara suite run`'s flags.
type suiteFlags struct {
	out, baseline, kernel, initrd, cache, daemon string
	jobs                                         int
	quiet                                        bool
}

func newSuiteRunCmd() *cobra.Command {
	var f suiteFlags
	cmd := &cobra.Command{
		Use:   "run SUITE.yaml -o DIR",
		Short: "Run, record and replay every workload of SUITE.yaml; exits 1 if a case failed",
		Long: `For each workload and vCPU count of the suite file: run it once (the
baseline), record it with each recorder, replay each recording; check the
output and the replays; measure record/run, replay/record, log size and
rate, squash rate and peak memory. Writes DIR/junit.xml, DIR/results.json,
DIR/report.md and DIR/chart.svg; a failed case's recording, consoles,
checkpoint and replay command are kept in DIR/failed/CASE. With --baseline
OLD.json, a record/run ratio or log rate above the baseline's times the
workload's threshold fails the case. Exits 0 if every case passed, 1 if
one failed, 2 if the suite could not run (a bad suite file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return f.run(args[0]) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "folder for junit.xml, results.json, report.md, chart.svg and failed/ (required)")
	fl.StringVar(&f.baseline, "baseline", "", "results.json of an earlier run to compare the figures against")
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel for the cold boots (default: build/vmlinux)")
	fl.StringVar(&f.initrd, "initrd", "", "initramfs (default: build/initramfs.cpio)")
	fl.StringVar(&f.cache, "checkpoint-cache", "", "folder that keeps booted checkpoints between runs (default: $SAMSARA_CACHE/checkpoints, or ~/.cache/samsara/checkpoints)")
	fl.IntVar(&f.jobs, "jobs", runtime.NumCPU(), "vCPUs' worth of jobs to run at once (default: the host's CPUs)")
	fl.StringVar(&f.daemon, "daemon", "", "record and replay through the samsara daemon on this socket (its --images must hold the checkpoint cache and the images)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but errors (progress is shown only on a terminal anyway)")
	cmd.MarkFlagRequired("output")
	return cmd
}

func (f *suiteFlags) run(path string) error {
	kernel, err := defaultArtifact(f.kernel, "vmlinux", "--kernel")
	if err != nil {
		return err
	}
	initrd, err := defaultArtifact(f.initrd, "initramfs.cpio", "--initrd")
	if err != nil {
		return err
	}
	s, err := suite.Load(path, initrd)
	if err != nil {
		return err
	}
	o := suite.Options{Kernel: kernel, Initrd: initrd, OutDir: f.out, Slots: f.jobs, HostCPUs: runtime.NumCPU(), CacheDir: f.cache,
		Daemon: f.daemon}
	if o.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("suite: the samsara binary: %w", err)
	}
	if o.CacheDir == "" {
		o.CacheDir = defaultCheckpointCache()
	}
	if f.baseline != "" {
		if o.Baseline, err = suite.ReadResults(f.baseline); err != nil {
			return err
		}
	}
	if !f.quiet && os.Getenv("CI") == "" && isTerminal(os.Stdout) {
		o.Progress = os.Stdout
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := suite.Run(ctx, s, o)
	if err != nil {
		return err
	}
	if !f.quiet {
		printSuiteSummary(os.Stdout, res, f.out)
	}
	if res.Failed() > 0 {
		return &exitError{status: 1}
	}
	return nil
}

// printSuiteSummary is the last word of a suite run, also in CI logs: one
// line per failed case and a go-test-like verdict.
func printSuiteSummary(w io.Writer, r *suite.Results, dir string) {
	for _, c := range r.Cases {
		if len(c.Failures) > 0 {
			fmt.Fprintf(w, "--- FAIL: %s (%s): %s\n", c.Name, c.Failures[0].Kind, firstLine(c.Failures[0].Message))
			if c.ReplayCommand != "" {
				fmt.Fprintf(w, "    reproduce: %s\n", c.ReplayCommand)
			}
		}
	}
	verdict := "ok"
	if r.Failed() > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s\tsuite %s: %d cases, %d failed, %.0fs; %s\n", verdict, r.Suite, len(r.Cases), r.Failed(),
		r.WallSeconds, filepath.Join(dir, "junit.xml"))
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// defaultCheckpointCache is where booted checkpoints are kept: the
// folder tests/harness_test.go uses, so suite runs and tests share boots.
func defaultCheckpointCache() string {
	if d := os.Getenv("SAMSARA_CACHE"); d != "" {
		return filepath.Join(d, "checkpoints")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "samsara", "checkpoints")
}
