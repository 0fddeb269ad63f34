package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newReplayCmd(logger func() *zap.Logger) *cobra.Command {
	var kernel, initrd, disk, fromCkpt, console, daemonSock string
	var statusFD int
	cmd := &cobra.Command{
		Use:   "replay rec.zst [--from-checkpoint F | --kernel K --initrd I] [--vm disk.img] | replay --daemon SOCKET ID",
		Short: "Re-execute a recording and verify it; exits non-zero on divergence",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if daemonSock != "" {
				return replayViaDaemon(daemonSock, args[0])
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			h, records, err := log.ReadAll(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cfg := vmm.Config{CPUs: h.Config.CPUs, Mem: h.Config.MemoryBytes, Append: h.Config.Cmdline, Argv: h.Config.Argv,
				Deterministic: true, NDE: nde.NewReplay(records), Logger: logger(), Console: os.Stdout}
			if err := matchInputs(h, &cfg, kernel, initrd, disk, fromCkpt); err != nil {
				return err
			}
			if console != "" {
				out, err := os.Create(console)
				if err != nil {
					return fmt.Errorf("--console: %w", err)
				}
				defer out.Close()
				cfg.Console = out
			}
			chunks, hasEnd := 0, false
			for _, r := range records {
				switch r.(type) {
				case *log.Chunk:
					chunks++
				case *log.End:
					hasEnd = true
				}
			}
			status := newStatusStream(statusFD, chunks)
			progress := newProgress("replay", chunks)
			cfg.Console = progress.console(cfg.Console)
			m, err := vmm.New(cfg)
			if err != nil {
				status.finish(daemon.OutcomeFailed, err)
				return err
			}
			defer m.Close()
			progress.start(m)
			status.start(m)
			res, err := m.Replay(records)
			progress.stop()
			var de *vmm.DivergenceError
			if errors.As(err, &de) {
				status.finish(daemon.OutcomeDiverged, de)
				return fmt.Errorf("DIVERGED: %w", err)
			}
			// A recording without an end record (stopped, or cut short)
			// cannot be checked against a final state: vmm.Replay replays
			// every chunk it holds and then fails for the missing end. All
			// chunks replayed without a divergence is a matched prefix.
			if err != nil && !hasEnd && m.Progress().Chunks == int64(chunks) {
				fmt.Fprintf(os.Stderr, "samsara: replay matched the recorded prefix (%d chunks, %d records; the recording has no end: it was stopped or cut short)\n", chunks, len(records))
				status.finish(daemon.OutcomeMatchedPrefix, nil)
				return nil
			}
			if err != nil {
				err = fmt.Errorf("replay: %w", err)
				status.finish(daemon.OutcomeFailed, err)
				return err
			}
			status.finish(daemon.OutcomeMatched, nil)
			fmt.Fprintf(os.Stderr, "samsara: replay matched the recording (%d records, exit status %d, %.2fs)\n", len(records), res.ExitStatus, res.Elapsed.Seconds())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&fromCkpt, "from-checkpoint", "", "the checkpoint the recording started from")
	fl.StringVar(&kernel, "kernel", "", "kernel of a cold-boot recording (default: build/vmlinux)")
	fl.StringVar(&initrd, "initrd", "", "initramfs of a cold-boot recording (default: build/initramfs.cpio)")
	fl.StringVar(&disk, "vm", "", "the disk image the recording used")
	fl.StringVar(&console, "console", "", "write the guest console to this file instead of stdout")
	addStatusFlag(cmd, &statusFD)
	addDaemonFlag(cmd, &daemonSock)
	return cmd
}

// matchInputs resolves the replay inputs and checks each against the
// SHA-256 in the header.
func matchInputs(h *log.Header, cfg *vmm.Config, kernel, initrd, disk, fromCkpt string) error {
	check := func(what, path, want string) error {
		got, err := log.HashFile(path)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if got != want {
			return fmt.Errorf("%s %s is not the one recorded (SHA-256 %s, recording has %s)", what, path, got[:12], want[:12])
		}
		return nil
	}
	var err error
	if h.Hashes.Checkpoint != "" {
		if fromCkpt == "" {
			return fmt.Errorf("the recording starts from checkpoint %s...; pass it with --from-checkpoint", h.Hashes.Checkpoint[:12])
		}
		if err := check("--from-checkpoint", fromCkpt, h.Hashes.Checkpoint); err != nil {
			return err
		}
		cfg.FromCheckpoint = fromCkpt
	} else {
		if cfg.Kernel, err = defaultArtifact(kernel, "vmlinux", "--kernel"); err != nil {
			return err
		}
		if cfg.Initrd, err = defaultArtifact(initrd, "initramfs.cpio", "--initrd"); err != nil {
			return err
		}
		if err := check("--kernel", cfg.Kernel, h.Hashes.Kernel); err != nil {
			return err
		}
		if err := check("--initrd", cfg.Initrd, h.Hashes.Initrd); err != nil {
			return err
		}
	}
	if h.Hashes.Disk != "" {
		if disk == "" {
			return fmt.Errorf("the recording used a disk image (SHA-256 %s...); pass it with --vm", h.Hashes.Disk[:12])
		}
		if err := check("--vm", disk, h.Hashes.Disk); err != nil {
			return err
		}
		cfg.Disk = disk
	}
	return nil
}
