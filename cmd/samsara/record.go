package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// version is samsara's version string in log headers.
const version = "0.1.0"

func newRecordCmd(logger func() *zap.Logger) *cobra.Command {
	var f vmFlags
	var out, fromCkpt, mode, tracker, daemonSock string
	var statusFD int
	cmd := &cobra.Command{
		Use:   "record [flags] -o rec.zst [-- PROGRAM ARGS...]",
		Short: "Run the guest and record it for deterministic replay",
		Long: `Run the guest like 'samsara run' (from a booted checkpoint with
--from-checkpoint, the normal case, or from a cold boot) and write a
recording that 'samsara replay' re-executes instruction for instruction.
Exits with PROGRAM's exit status.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if daemonSock != "" {
				if tracker != "" {
					return fmt.Errorf("--tracker is not supported with --daemon: the daemon's recorder uses the default tracker")
				}
				return recordViaDaemon(cmd, daemonSock, &f, fromCkpt, mode, out, args)
			}
			if out == "" {
				return fmt.Errorf("-o FILE is required: where to write the recording")
			}
			if mode != string(log.ModeSerialized) && mode != string(log.ModeParallel) {
				return fmt.Errorf("--mode %q: want parallel or serialized", mode)
			}
			if tracker != "" && mode != string(log.ModeParallel) {
				return fmt.Errorf("--tracker is for --mode parallel (the serialized recorder tracks no pages)")
			}
			if tracker != "" {
				if _, err := ept.New(tracker); err != nil {
					return fmt.Errorf("--tracker: %w (see samsara probe)", err)
				}
			}
			f.fromCheckpoint = fromCkpt != ""
			cfg, closeConsole, err := f.config(args)
			if err != nil {
				return err
			}
			defer closeConsole()
			cfg.Logger, cfg.FromCheckpoint, cfg.Deterministic = logger(), fromCkpt, true
			cfg.Parallel, cfg.Tracker = mode == string(log.ModeParallel), tracker
			h, err := recordHeader(cfg)
			if err != nil {
				return err
			}
			h.Mode = log.Mode(mode)
			file, err := os.Create(out)
			if err != nil {
				return fmt.Errorf("-o: %w", err)
			}
			defer file.Close()
			bw := bufio.NewWriterSize(file, 1<<20)
			w, err := log.NewWriter(bw, h)
			if err != nil {
				return err
			}
			status := newStatusStream(statusFD, 0)
			if status != nil {
				status.logBytes = func() int64 { return int64(w.Stats().FileBytes) }
			}
			// closeLog ends the log: at the end of the recording, or at
			// once on a stop signal (stop.go).
			var closeErr error
			closeLog := func() {
				closeErr = w.Close()
				if ferr := bw.Flush(); closeErr == nil {
					closeErr = ferr
				}
				if closeErr == nil {
					closeErr = file.Sync()
				}
			}
			sink := newStopSink(w, func() {
				closeLog()
				status.finish(daemon.OutcomeStopped, closeErr)
			})
			defer sink.release()
			cfg.NDE = nde.NewRecord(sink)
			progress := newProgress("record", 0)
			cfg.Console = progress.console(cfg.Console)
			m, err := vmm.New(cfg)
			if err != nil {
				status.finish(daemon.OutcomeFailed, err)
				return err
			}
			defer m.Close()
			progress.start(m)
			status.start(m)
			var res vmm.Result
			if cfg.Parallel {
				res, err = m.RecordParallel(sink)
			} else {
				res, err = m.Record(sink)
			}
			progress.stop()
			if stopped := sink.stopStatus(); stopped != 0 {
				// The recorder ended on errStopped (or finished just as
				// the signal came): the log is what the signal closed.
				sink.finish()
				if closeErr != nil {
					return fmt.Errorf("record: close the stopped log: %w", closeErr)
				}
				st := w.Stats()
				fmt.Fprintf(os.Stderr, "samsara: stopped by a signal: the recorded prefix, %d records, %d bytes, is in %s and replays\n", st.Records, st.CompressedBytes, out)
				return &exitError{status: stopped}
			}
			closeLog() // also after an error: the log keeps its prefix
			if err == nil {
				err = closeErr
			}
			if err != nil {
				err = fmt.Errorf("record: %w", err)
				status.finish(daemon.OutcomeFailed, err)
				return err
			}
			st := w.Stats()
			fmt.Fprintf(os.Stderr, "samsara: recorded %d records, %d bytes in %.2fs to %s\n", st.Records, st.CompressedBytes, res.Elapsed.Seconds(), out)
			if res.ExitStatus != 0 {
				err = &exitError{status: res.ExitStatus}
			}
			status.finish(daemon.OutcomeFinished, err)
			return err
		},
	}
	addStatusFlag(cmd, &statusFD)
	addDaemonFlag(cmd, &daemonSock)
	addDaemonRecordFlags(cmd)
	f.register(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the recording to FILE")
	cmd.Flags().StringVar(&fromCkpt, "from-checkpoint", "", "start from a booted checkpoint (see run --save-checkpoint)")
	cmd.Flags().StringVar(&mode, "mode", "serialized", "recorder: parallel (all vCPUs at once, ordered commit of chunks) or serialized (one vCPU at a time)")
	cmd.Flags().StringVar(&tracker, "tracker", "", "page tracker of the parallel recorder (default: the fastest exact one here; see samsara probe)")
	return cmd
}

// recordHeader fills the log header: the machine's shape and the SHA-256
// of every input replay must be given again.
func recordHeader(cfg vmm.Config) (*log.Header, error) {
	h := &log.Header{
		Config:         log.VMConfig{CPUs: cfg.CPUs, MemoryBytes: cfg.Mem, Cmdline: cfg.Append, Argv: cfg.Argv},
		Platform:       hostPlatform(),
		Counter:        "insn_emulation (guest kernel instructions) + exits",
		Mode:           log.ModeSerialized,
		SamsaraVersion: version,
		Created:        time.Now().UTC(),
	}
	var err error
	if cfg.FromCheckpoint != "" {
		if h.Hashes.Checkpoint, err = log.HashFile(cfg.FromCheckpoint); err != nil {
			return nil, fmt.Errorf("--from-checkpoint: %w", err)
		}
	} else {
		if h.Hashes.Kernel, err = log.HashFile(cfg.Kernel); err != nil {
			return nil, fmt.Errorf("--kernel: %w", err)
		}
		if h.Hashes.Initrd, err = log.HashFile(cfg.Initrd); err != nil {
			return nil, fmt.Errorf("--initrd: %w", err)
		}
	}
	if cfg.Disk != "" {
		if h.Hashes.Disk, err = log.HashFile(cfg.Disk); err != nil {
			return nil, fmt.Errorf("--vm: %w", err)
		}
	}
	h.Hashes.Cmdline = log.HashBytes([]byte(cfg.Append))
	return h, nil
}

// hostPlatform names the virtualization platform for the header.
func hostPlatform() log.Platform {
	switch vmm.ProbePlatform() {
	case "vmx":
		return log.PlatformVMX
	case "svm":
		return log.PlatformSVM
	}
	return log.PlatformPVM
}
