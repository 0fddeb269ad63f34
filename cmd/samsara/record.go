package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/session"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// version is samsara's version string in log headers.
const version = "0.1.0"

func newRecordCmd(logger func() *zap.Logger) *cobra.Command {
	var r recordFlags
	cmd := &cobra.Command{
		Use:   "record [flags] -o rec.zst [-- PROGRAM ARGS...]",
		Short: "Run the guest and record it for deterministic replay",
		Long: `Run the guest like 'samsara run' (from a booted checkpoint with
--from-checkpoint, the normal case, or from a cold boot) and write a
recording that 'samsara replay' re-executes instruction for instruction.
Exits with PROGRAM's exit status.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if r.daemonSock != "" {
				if r.tracker != "" {
					return fmt.Errorf("--tracker is not supported with --daemon: the daemon's recorder uses the default tracker")
				}
				if r.profile || r.profileJSON != "" {
					return fmt.Errorf("--profile is not supported with --daemon: the daemon's job records in its own process")
				}
				return recordViaDaemon(cmd, r.daemonSock, &r.vm, r.fromCkpt, r.mode, r.out, args)
			}
			if err := checkRecordFlags(r.out, r.mode, r.tracker); err != nil {
				return err
			}
			return r.record(logger(), args)
		},
	}
	addStatusFlag(cmd, &r.statusFD)
	addDaemonFlag(cmd, &r.daemonSock)
	addDaemonRecordFlags(cmd)
	r.vm.register(cmd)
	r.session.registerRecord(cmd)
	cmd.Flags().StringVarP(&r.out, "output", "o", "", "write the recording to FILE")
	cmd.Flags().StringVar(&r.fromCkpt, "from-checkpoint", "", "start from a booted checkpoint (see run --save-checkpoint)")
	cmd.Flags().StringVar(&r.mode, "mode", "serialized", "recorder: parallel (all vCPUs at once, ordered commit of chunks) or serialized (one vCPU at a time)")
	cmd.Flags().StringVar(&r.tracker, "tracker", "", "page tracker of the parallel recorder (default: the fastest exact one here; see samsara probe)")
	cmd.Flags().BoolVar(&r.profile, "profile", false, "print where each vCPU's wall time went: guest, exits, harvest, commit, squashed, wait, checkpoint, stops (README, \"Profile of a recording\")")
	cmd.Flags().StringVar(&r.profileJSON, "profile-json", "", "write that profile to FILE as JSON (seconds per phase and vCPU)")
	return cmd
}

// recordFlags are record's flags.
type recordFlags struct {
	vm                                       vmFlags
	session                                  sessionFlags
	out, fromCkpt, mode, tracker, daemonSock string
	statusFD                                 int
	// profile prints where the wall time went; profileJSON writes it.
	profile     bool
	profileJSON string
}

// setup is the machine and session configuration and the log header.
func (r *recordFlags) setup(logger *zap.Logger, args []string) (vmm.Config, session.Options, *log.Header, func(), error) {
	r.vm.fromCheckpoint = r.fromCkpt != ""
	cfg, closeConsole, err := r.vm.config(args)
	if err != nil {
		return cfg, session.Options{}, nil, nil, err
	}
	cfg.Logger, cfg.FromCheckpoint, cfg.Deterministic = logger, r.fromCkpt, true
	opts := r.session.o
	opts.Logger, opts.Parallel, opts.Tracker = cfg.Logger, r.mode == string(log.ModeParallel), r.tracker
	platform := hostPlatform()
	opts.KernelCount = platform == log.PlatformPVM
	cfg.SeparateVMs, cfg.Platform = opts.Parallel, string(platform)
	h, err := recordHeader(cfg, platform)
	if err != nil {
		closeConsole()
		return cfg, opts, nil, nil, err
	}
	h.Mode, h.Recorder = log.Mode(r.mode), opts.Recorder()
	return cfg, opts, h, closeConsole, nil
}

// record runs the recording: the log is closed with its prefix on an
// error and at once on a stop signal (stop.go).
func (r *recordFlags) record(logger *zap.Logger, args []string) error {
	cfg, opts, h, closeConsole, err := r.setup(logger, args)
	if err != nil {
		return err
	}
	defer closeConsole()
	file, err := os.Create(r.out)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	defer file.Close()
	lf, err := newLogFile(file, h)
	if err != nil {
		return err
	}
	status := newStatusStream(r.statusFD, 0)
	if status != nil {
		status.logBytes = func() int64 { return int64(lf.w.Stats().FileBytes) }
	}
	sink := newStopSink(lf.w, func() {
		lf.close()
		status.finish(daemon.OutcomeStopped, lf.err)
	})
	defer sink.release()
	cfg.NDE = nde.NewRecord(sink)
	progress := newProgress("record", 0)
	cfg.Console = progress.console(cfg.Console)
	m, rs, err := openSession(cfg, opts, status)
	if err != nil {
		return err
	}
	defer m.Close()
	defer rs.Close()
	sink.onStop = func() { m.Stop(errStopped) }
	progress.start(rs)
	status.start(rs)
	res, err := rs.Record(sink)
	progress.stop()
	if perr := r.writeProfile(rs.Profile()); perr != nil && err == nil {
		err = perr
	}
	return r.finish(lf, sink, status, res, err)
}

// writeProfile prints the profile (--profile) and writes its JSON
// (--profile-json), also for a recording that failed: where its time went
// helps to see why.
func (r *recordFlags) writeProfile(p session.Profile) error {
	if r.profile {
		p.Format(os.Stderr)
	}
	if r.profileJSON == "" {
		return nil
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err == nil {
		err = os.WriteFile(r.profileJSON, append(b, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("--profile-json: %w", err)
	}
	return nil
}

// finish reports how the recording ended and its exit status.
func (r *recordFlags) finish(lf *logFile, sink *stopSink, status *statusStream, res vmm.Result, err error) error {
	if stopped := sink.stopStatus(); stopped != 0 {
		// The recorder ended on errStopped (or finished just as the
		// signal came): the log is what the signal closed.
		sink.finish()
		if lf.err != nil {
			return fmt.Errorf("record: close the stopped log: %w", lf.err)
		}
		st := lf.w.Stats()
		fmt.Fprintf(os.Stderr, "samsara: stopped by a signal: the recorded prefix, %d records, %d bytes, is in %s and replays\n", st.Records, st.CompressedBytes, r.out)
		return &exitError{status: stopped}
	}
	lf.close() // also after an error: the log keeps its prefix
	if err == nil {
		err = lf.err
	}
	if err != nil {
		err = fmt.Errorf("record: %w", err)
		status.finish(daemon.OutcomeFailed, err)
		return err
	}
	st := lf.w.Stats()
	fmt.Fprintf(os.Stderr, "samsara: recorded %d records, %d bytes in %.2fs to %s\n", st.Records, st.CompressedBytes, res.Elapsed.Seconds(), r.out)
	if res.ExitStatus != 0 {
		err = &exitError{status: res.ExitStatus}
	}
	status.finish(daemon.OutcomeFinished, err)
	return err
}

// openSession builds the machine and the record or replay session on it;
// a failure is the command's final status.
func openSession(cfg vmm.Config, opts session.Options, status *statusStream) (*vmm.Machine, *session.Session, error) {
	m, err := vmm.New(cfg)
	if err != nil {
		status.finish(daemon.OutcomeFailed, err)
		return nil, nil, err
	}
	rs, err := session.New(m, opts)
	if err != nil {
		m.Close()
		status.finish(daemon.OutcomeFailed, err)
		return nil, nil, err
	}
	return m, rs, nil
}

// logFile is a recording being written to a file.
type logFile struct {
	file *os.File
	bw   *bufio.Writer
	w    *log.Writer
	// err is the result of close.
	err error
}

// newLogFile starts a recording with header h in file.
func newLogFile(file *os.File, h *log.Header) (*logFile, error) {
	bw := bufio.NewWriterSize(file, 1<<20)
	w, err := log.NewWriter(bw, h)
	if err != nil {
		return nil, err
	}
	return &logFile{file: file, bw: bw, w: w}, nil
}

// close ends the log (its end marker), flushes and syncs it; the result
// is in err.
func (l *logFile) close() {
	l.err = l.w.Close()
	if ferr := l.bw.Flush(); l.err == nil {
		l.err = ferr
	}
	if l.err == nil {
		l.err = l.file.Sync()
	}
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
