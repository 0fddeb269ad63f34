package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newRootCmd() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "samsara",
		Short:         "Deterministic record/replay of multiprocessor virtual machines on KVM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log VMM diagnostics to stderr")
	// --cpuprofile writes a Go CPU profile of the whole command (go tool
	// pprof reads it): how the time outside the guest was spent, e.g.
	// loading a checkpoint inside the emulated host.
	var cpuprofile string
	var profFile *os.File
	root.PersistentFlags().StringVar(&cpuprofile, "cpuprofile", "", "write a Go CPU profile of samsara itself to this file")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuprofile == "" {
			return nil
		}
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		profFile = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
		}
	}
	logger := func() *zap.Logger {
		if !verbose {
			return zap.NewNop()
		}
		cfg := zap.NewDevelopmentConfig()
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
		l, err := cfg.Build()
		if err != nil {
			return zap.NewNop()
		}
		return l
	}
	root.AddCommand(newRunCmd(logger), newRecordCmd(logger), newReplayCmd(logger), newInspectCmd(), newProbeCmd(), newCmdlineCmd(),
		newDaemonCmd(logger), newPsCmd(), newStopCmd(), newSuiteCmd(), newTraceCmd(logger))
	return root
}
