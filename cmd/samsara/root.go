package main

import (
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
	root.AddCommand(newRunCmd(logger), newRecordCmd(logger), newReplayCmd(logger), newInspectCmd(), newProbeCmd(), newCmdlineCmd())
	return root
}
