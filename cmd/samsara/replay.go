package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/session"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newReplayCmd(logger func() *zap.Logger) *cobra.Command {
	var r replayFlags
	cmd := &cobra.Command{
		Use:   "replay rec.zst [--from-checkpoint F | --kernel K --initrd I] [--vm disk.img] | replay --daemon SOCKET ID",
		Short: "Re-execute a recording and verify it; exits non-zero on divergence",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if r.daemonSock != "" {
				return replayViaDaemon(r.daemonSock, args[0])
			}
			if r.gdb != "" {
				return r.debug(logger(), args[0])
			}
			return r.replay(logger(), args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&r.fromCkpt, "from-checkpoint", "", "the checkpoint the recording started from")
	fl.StringVar(&r.kernel, "kernel", "", "kernel of a cold-boot recording (default: build/vmlinux)")
	fl.StringVar(&r.initrd, "initrd", "", "initramfs of a cold-boot recording (default: build/initramfs.cpio)")
	fl.StringVar(&r.disk, "vm", "", "the disk image the recording used")
	fl.StringVar(&r.console, "console", "", "write the guest console to this file instead of stdout")
	fl.StringVar(&r.gdb, "gdb", "", "serve the GDB remote protocol on ADDR (127.0.0.1:PORT or a Unix socket path) instead of replaying straight through")
	fl.BoolVar(&r.gdbAllowRemote, "gdb-allow-remote", false, "let --gdb listen on a non-loopback address (the protocol has no authentication: whoever connects reads all guest memory)")
	fl.DurationVar(&r.gdbCkptEvery, "gdb-checkpoint-every", 0, "with --gdb, checkpoint the machine before a chunk this often in replay time, so that going back replays from the nearest one (0: 2s)")
	fl.MarkHidden("gdb-checkpoint-every")
	r.session.registerReplay(cmd)
	addStatusFlag(cmd, &r.statusFD)
	addDaemonFlag(cmd, &r.daemonSock)
	return cmd
}

// replayFlags are replay's flags.
type replayFlags struct {
	kernel, initrd, disk, fromCkpt, console, daemonSock string
	// gdb is --gdb's address; gdbAllowRemote lets it be non-loopback.
	gdb            string
	gdbAllowRemote bool
	// gdbCkptEvery spaces the debugger's checkpoints (tests make it
	// small so that short recordings get some).
	gdbCkptEvery time.Duration
	statusFD     int
	session      sessionFlags
}

// config builds the machine the recording in path was made on, and reads
// its records.
func (r *replayFlags) config(logger *zap.Logger, path string) (vmm.Config, []log.Record, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return vmm.Config{}, nil, nil, err
	}
	defer f.Close()
	h, records, err := log.ReadAll(f)
	if err != nil {
		return vmm.Config{}, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg := vmm.Config{CPUs: h.Config.CPUs, Mem: h.Config.MemoryBytes, Append: h.Config.Cmdline, Argv: h.Config.Argv, Platform: string(h.Platform),
		Deterministic: true, NDE: nde.NewReplay(records), Logger: logger, Console: os.Stdout}
	if err := matchInputs(h, &cfg, r.kernel, r.initrd, r.disk, r.fromCkpt); err != nil {
		return cfg, nil, nil, err
	}
	closeConsole := func() {}
	if r.console != "" {
		out, err := os.Create(r.console)
		if err != nil {
			return cfg, nil, nil, fmt.Errorf("--console: %w", err)
		}
		cfg.Console, closeConsole = out, func() { out.Close() }
	}
	return cfg, records, closeConsole, nil
}

// replay re-executes the recording in path and reports the outcome.
func (r *replayFlags) replay(logger *zap.Logger, path string) error {
	cfg, records, closeConsole, err := r.config(logger, path)
	if err != nil {
		return err
	}
	defer closeConsole()
	chunks := 0
	for _, rec := range records {
		if _, ok := rec.(*log.Chunk); ok {
			chunks++
		}
	}
	status := newStatusStream(r.statusFD, chunks)
	progress := newProgress("replay", chunks)
	cfg.Console = progress.console(cfg.Console)
	opts := r.session.o
	opts.Logger = cfg.Logger
	if opts.DebugWrites != "" {
		// The mismatches are what --debug-writes is for: they are
		// warnings, printed without -v too.
		opts.Logger = atLeast(opts.Logger, zapcore.WarnLevel)
	}
	opts.KernelCount = replayCounts(cfg)
	m, rs, err := openSession(cfg, opts, status)
	if err != nil {
		return err
	}
	defer m.Close()
	defer rs.Close()
	progress.start(rs)
	status.start(rs)
	res, err := rs.Replay(records)
	progress.stop()
	return replayOutcome(status, res, err, len(records))
}

// replayCounts says whether the recording counted guest kernel
// instructions (PVM), which decides how replay finds a chunk end that is
// not an exit: a breakpoint and the count, or a state-matching stop
// (internal/session, det_match.go). cfg.Platform is the recording's.
func replayCounts(cfg vmm.Config) bool {
	return cfg.Platform == string(log.PlatformPVM)
}

// replayOutcome reports a replay's result: matched, the matched prefix of
// a recording without an end (stopped, or cut short: exit 0, saying so),
// or the divergence or error.
func replayOutcome(status *statusStream, res vmm.Result, err error, records int) error {
	var de *session.DivergenceError
	var pe *session.PrefixError
	switch {
	case errors.As(err, &de):
		status.finish(daemon.OutcomeDiverged, de)
		return fmt.Errorf("DIVERGED: %w", err)
	case errors.As(err, &pe):
		fmt.Fprintf(os.Stderr, "samsara: replay matched the recorded prefix (%d chunks, %d records; the recording has no end: it was stopped or cut short, so only this prefix is verified)\n", pe.Chunks, records)
		status.finish(daemon.OutcomeMatchedPrefix, nil)
		return nil
	case err != nil:
		err = fmt.Errorf("replay: %w", err)
		status.finish(daemon.OutcomeFailed, err)
		return err
	}
	status.finish(daemon.OutcomeMatched, nil)
	fmt.Fprintf(os.Stderr, "samsara: replay matched the recording (%d records, exit status %d, %.2fs)\n", records, res.ExitStatus, res.Elapsed.Seconds())
	return nil
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
