package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newRunCmd(logger func() *zap.Logger) *cobra.Command {
	var f vmFlags
	var saveCkpt, fromCkpt string
	var timing bool
	cmd := &cobra.Command{
		Use:   "run [flags] [-- PROGRAM ARGS...]",
		Short: "Boot the guest and run PROGRAM in it (no recording); exits with PROGRAM's status",
		Long: `Boot the guest (by default the reference kernel and initramfs on 2 vCPUs),
run PROGRAM inside it (default: the reference workload), stream the guest
console, and exit with PROGRAM's exit status.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, closeConsole, err := f.config(args)
			if err != nil {
				return err
			}
			defer closeConsole()
			cfg.Logger = logger()
			cfg.SaveCheckpoint, cfg.FromCheckpoint = saveCkpt, fromCkpt
			m, err := vmm.New(cfg)
			if err != nil {
				return err
			}
			defer m.Close()
			res, err := m.Run()
			if timing {
				fmt.Fprintf(os.Stderr, "samsara: boot-to-init %.3fs, total %.3fs\n", res.BootToInit.Seconds(), res.Elapsed.Seconds())
			}
			if err != nil {
				return err
			}
			if res.ExitStatus != 0 {
				return &exitError{status: res.ExitStatus}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&saveCkpt, "save-checkpoint", "", "save the whole machine to FILE when the guest's init starts")
	cmd.Flags().StringVar(&fromCkpt, "from-checkpoint", "", "resume from a checkpoint FILE instead of booting")
	cmd.Flags().BoolVar(&timing, "timing", false, "print boot-to-init and total wall time on stderr")
	return cmd
}
