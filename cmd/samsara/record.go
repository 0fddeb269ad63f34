package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/session"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// version is samsara's version string in log headers.
const version = "0.1.0"

func newRecordCmd(logger func() *zap.Logger) *cobra.Command {
	var f vmFlags
	var sf sessionFlags
	var out, fromCkpt, mode, tracker string
	cmd := &cobra.Command{
		Use:   "record [flags] -o rec.zst [-- PROGRAM ARGS...]",
		Short: "Run the guest and record it for deterministic replay",
		Long: `Run the guest like 'samsara run' (from a booted checkpoint with
--from-checkpoint, the normal case, or from a cold boot) and write a
recording that 'samsara replay' re-executes instruction for instruction.
Exits with PROGRAM's exit status.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecordFlags(out, mode, tracker); err != nil {
				return err
			}
			cfg, closeConsole, err := f.config(args)
			if err != nil {
				return err
			}
			defer closeConsole()
			cfg.Logger, cfg.FromCheckpoint, cfg.Deterministic = logger(), fromCkpt, true
			opts := sf.o
			opts.Logger, opts.Parallel, opts.Tracker = cfg.Logger, mode == string(log.ModeParallel), tracker
			platform := hostPlatform()
			opts.KernelCount = platform == log.PlatformPVM
			cfg.SeparateVMs, cfg.Platform = opts.Parallel, string(platform)
			h, err := recordHeader(cfg, platform)
			if err != nil {
				return err
			}
			h.Mode, h.Recorder = log.Mode(mode), opts.Recorder()
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
			cfg.NDE = nde.NewRecord(w)
			progress := newProgress("record", 0)
			cfg.Console = progress.console(cfg.Console)
			m, err := vmm.New(cfg)
			if err != nil {
				return err
			}
			defer m.Close()
			rs, err := session.New(m, opts)
			if err != nil {
				return err
			}
			defer rs.Close()
			progress.start(rs)
			res, err := rs.Record(w)
			progress.stop()
			if cerr := w.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if ferr := bw.Flush(); err == nil && ferr != nil {
				err = ferr
			}
			if err != nil {
				return fmt.Errorf("record: %w", err)
			}
			st := w.Stats()
			fmt.Fprintf(os.Stderr, "samsara: recorded %d records, %d bytes in %.2fs to %s\n", st.Records, st.CompressedBytes, res.Elapsed.Seconds(), out)
			if res.ExitStatus != 0 {
				return &exitError{status: res.ExitStatus}
			}
			return nil
		},
	}
	f.register(cmd)
	sf.registerRecord(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the recording to FILE")
	cmd.Flags().StringVar(&fromCkpt, "from-checkpoint", "", "start from a booted checkpoint (see run --save-checkpoint)")
	cmd.Flags().StringVar(&mode, "mode", "serialized", "recorder: parallel (all vCPUs at once, ordered commit of chunks) or serialized (one vCPU at a time)")
	cmd.Flags().StringVar(&tracker, "tracker", "", "page tracker of the parallel recorder (default: the fastest exact one here; see samsara probe)")
	return cmd
}

// checkRecordFlags rejects record's flags that cannot go together.
func checkRecordFlags(out, mode, tracker string) error {
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
	return nil
}

// recordHeader fills the log header: the machine's shape and the SHA-256
// of every input replay must be given again.
func recordHeader(cfg vmm.Config, platform log.Platform) (*log.Header, error) {
	counter := "exits (no instruction counter: chunks end at exits and kernel busy-wait yields)"
	if platform == log.PlatformPVM {
		counter = "insn_emulation (guest kernel instructions) + exits"
	}
	h := &log.Header{
		Config:         log.VMConfig{CPUs: cfg.CPUs, MemoryBytes: cfg.Mem, Cmdline: cfg.Append, Argv: cfg.Argv},
		Platform:       platform,
		Counter:        counter,
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
