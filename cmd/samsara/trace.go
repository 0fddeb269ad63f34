package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/session"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newTraceCmd(logger func() *zap.Logger) *cobra.Command {
	var t traceFlags
	cmd := &cobra.Command{
		Use:   "trace rec.zst -o DIR [--format native|text|champsim] [--vcpu N] [--chunks A-B] [--from C.I] [--to C.I] [--kernel-only|--user-only] [replay's machine flags]",
		Short: "Replay a recording, verify it, and expand it into an execution trace of every single-steppable instruction, with device accesses, DMA and interrupt frames",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.run(logger(), args[0])
		},
	}
	fl := cmd.Flags()
	r := &t.replay
	fl.StringVar(&r.fromCkpt, "from-checkpoint", "", "the checkpoint the recording started from")
	fl.StringVar(&r.kernel, "kernel", "", "kernel of a cold-boot recording (default: build/vmlinux)")
	fl.StringVar(&r.initrd, "initrd", "", "initramfs of a cold-boot recording (default: build/initramfs.cpio)")
	fl.StringVar(&r.disk, "vm", "", "the disk image the recording used")
	fl.StringVar(&r.console, "console", "", "write the guest console to this file (default: discard it)")
	fl.StringVarP(&t.out, "output", "o", "", "the trace directory to write (must not exist)")
	fl.StringVar(&t.format, "format", trace.FormatNative, "native, text or champsim")
	fl.IntVar(&t.vcpu, "vcpu", -1, "trace only this vCPU (-1: every vCPU)")
	fl.StringVar(&t.chunks, "chunks", "", "trace only chunks A-B (0-based, inclusive; A- for A to the end)")
	fl.StringVar(&t.from, "from", "", "trace from position C.I on: instruction I (0-based) of chunk C, or C for the chunk's start")
	fl.StringVar(&t.to, "to", "", "trace up to position C.I, inclusive: instruction I of chunk C, or C for the chunk's end")
	fl.BoolVar(&t.values, "values", false, "record the bytes each memory access reads or writes (8 more bytes per access)")
	fl.StringVar(&t.systemMap, "system-map", "", "the guest kernel's System.map, to name each chunk's process (default: System.map beside --kernel, else the reference build's; none found: processes are not named)")
	fl.StringVar(&t.taskOffsets, "task-offsets", "", "the guest kernel's task_struct offsets, written beside vmlinux by guest-images/build-kernel.sh (default: as --system-map)")
	fl.BoolVar(&t.userOnly, "user-only", false, "write guest user instructions only (kernel code is still stepped, so positions match a full trace); needs hardware virtualization")
	fl.BoolVar(&t.kernelOnly, "kernel-only", false, "trace guest kernel code only; user code runs unstepped (always so under PVM, where user code cannot be single-stepped)")
	fl.BoolVar(&t.keepPartial, "debug-keep-partial", false, "keep DIR.partial of a failed trace, to see where it went wrong")
	fl.MarkHidden("debug-keep-partial")
	r.session.registerReplay(cmd)
	cmd.MarkFlagRequired("output")
	return cmd
}

// traceFlags are trace's flags.
type traceFlags struct {
	replay     replayFlags
	out        string
	format     string
	vcpu       int
	chunks     string
	from, to   string
	kernelOnly bool
	userOnly   bool
	// keepPartial keeps a failed trace's partial directory (hidden flag).
	keepPartial bool
	values      bool
	// systemMap and taskOffsets name the guest kernel's files for who ran.
	systemMap, taskOffsets string
}

// kernelInfo loads what who-ran needs. Files given by flag must load;
// the defaults (beside the recording's kernel, else the reference
// build's) are optional: without them processes are not named, and the
// trace says so.
func (t *traceFlags) kernelInfo(kernel string) (*trace.Kernel, string, error) {
	find := func(flagValue, name, flagName string) (string, bool, error) {
		if flagValue != "" {
			p, err := defaultArtifact(flagValue, name, flagName)
			return p, true, err
		}
		if kernel != "" {
			p := filepath.Join(filepath.Dir(kernel), name)
			if _, err := os.Stat(p); err == nil {
				return p, true, nil
			}
		}
		p, err := defaultArtifact("", name, flagName)
		return p, err == nil, nil
	}
	smap, ok1, err := find(t.systemMap, "System.map", "--system-map")
	if err != nil {
		return nil, "", err
	}
	offs, ok2, err := find(t.taskOffsets, "task-offsets", "--task-offsets")
	if err != nil {
		return nil, "", err
	}
	if !ok1 || !ok2 {
		return nil, "processes not named: no System.map and task-offsets found (give --system-map and --task-offsets)", nil
	}
	k, err := trace.LoadKernel(smap, offs)
	if err != nil {
		return nil, "", err
	}
	return k, "processes named from " + smap + " and " + offs, nil
}

// parseChunks parses --chunks A-B.
func parseChunks(s string) (from, to int, err error) {
	if s == "" {
		return 0, -1, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	if from, err = strconv.Atoi(a); err != nil || from < 0 {
		return 0, 0, fmt.Errorf("--chunks %q: want A-B, chunk indexes from 0", s)
	}
	to = -1
	if b != "" {
		if to, err = strconv.Atoi(b); err != nil || to < from {
			return 0, 0, fmt.Errorf("--chunks %q: want A-B with A <= B", s)
		}
	}
	return from, to, nil
}

// parsePosition parses a --from/--to position: C.I (chunk C,
// instruction I in it) or C (hasIndex false).
func parsePosition(flag, s string) (chunk int, index uint64, hasIndex bool, err error) {
	a, b, hasIndex := strings.Cut(s, ".")
	bad := fmt.Errorf("--%s %q: want C.I (instruction I of chunk C, both from 0) or C, as trace positions are written", flag, s)
	if chunk, err = strconv.Atoi(a); err != nil || chunk < 0 {
		return 0, 0, false, bad
	}
	if hasIndex {
		if index, err = strconv.ParseUint(b, 10, 64); err != nil {
			return 0, 0, false, bad
		}
	}
	return chunk, index, hasIndex, nil
}

// window is the expander's traced window from --chunks, --from and --to:
// --from and --to narrow the chunk range.
func (t *traceFlags) window(e *session.Expander) error {
	from, to, err := parseChunks(t.chunks)
	if err != nil {
		return err
	}
	e.FromChunk, e.ToChunk = from, to
	if t.from != "" {
		c, i, _, err := parsePosition("from", t.from)
		if err != nil {
			return err
		}
		if c > e.FromChunk {
			e.FromChunk, e.FromIndex = c, i
		} else if c == e.FromChunk {
			e.FromIndex = i
		}
	}
	if t.to != "" {
		c, i, hasIndex, err := parsePosition("to", t.to)
		if err != nil {
			return err
		}
		if e.ToChunk < 0 || c <= e.ToChunk {
			e.ToChunk, e.Until = c, 0
			if hasIndex {
				e.Until = i + 1
			}
		}
	}
	if e.ToChunk >= 0 && (e.ToChunk < e.FromChunk || e.ToChunk == e.FromChunk && e.Until != 0 && e.Until <= e.FromIndex) {
		return fmt.Errorf("the traced window is empty: from %d.%d to chunk %d (--chunks %q, --from %q, --to %q)", e.FromChunk, e.FromIndex, e.ToChunk, t.chunks, t.from, t.to)
	}
	return nil
}

// run replays the recording in path while expanding it into t.out.
func (t *traceFlags) run(logger *zap.Logger, path string) error {
	// User code is single-stepped on hardware virtualization only: under
	// PVM a step of user code does not stop after the instruction
	// (shared/PLATFORM.md, "Stopping exactly").
	platform := vmm.ProbePlatform()
	userSteps := !t.kernelOnly && (platform == "vmx" || platform == "svm")
	switch {
	case t.userOnly && t.kernelOnly:
		return fmt.Errorf("--user-only and --kernel-only exclude each other")
	case t.userOnly && !userSteps:
		return fmt.Errorf("--user-only: user code cannot be single-stepped on this platform (%s; it can under VMX or SVM): shared/PLATFORM.md", platform)
	}
	exp := &session.Expander{VCPU: t.vcpu, Values: t.values, UserSteps: userSteps, UserOnly: t.userOnly}
	if err := t.window(exp); err != nil {
		return err
	}
	cfg, records, closeConsole, err := t.replay.config(logger, path)
	if err != nil {
		return err
	}
	defer closeConsole()
	if t.replay.console == "" {
		cfg.Console = io.Discard
	}
	if t.vcpu >= cfg.CPUs {
		return fmt.Errorf("--vcpu %d: the recording has %d vCPUs", t.vcpu, cfg.CPUs)
	}
	k, whoRan, err := t.kernelInfo(cfg.Kernel)
	if err != nil {
		return err
	}
	exp.Kernel = k
	fmt.Fprintf(os.Stderr, "samsara: trace: %s\n", whoRan)
	set, err := trace.Create(t.out, t.format, cfg.CPUs)
	if err != nil {
		return err
	}
	opts := t.replay.session.o
	opts.Logger = cfg.Logger
	opts.KernelCount = replayCounts(cfg)
	m, rs, err := openSession(cfg, opts, nil)
	if err != nil {
		set.Abort()
		return err
	}
	defer m.Close()
	defer rs.Close()
	exp.Set = set
	start := time.Now()
	_, err = rs.Expand(records, exp)
	elapsed := time.Since(start)
	if err = traceOutcome(err); err != nil {
		if t.keepPartial {
			set.Keep()
			return fmt.Errorf("%w (the partial trace is kept in %s.partial)", err, t.out)
		}
		set.Abort()
		return err
	}
	if err := set.Finish(); err != nil {
		return err
	}
	return t.summary(set, exp, cfg.CPUs, elapsed, userNote(userSteps, t.kernelOnly, platform))
}

// traceOutcome is replay's verdict for a trace: a divergence or any error
// fails it; a recording without an end verifies only its prefix, which
// the trace then covers (and says so).
func traceOutcome(err error) error {
	var de *session.DivergenceError
	var pe *session.PrefixError
	switch {
	case errors.As(err, &de):
		return fmt.Errorf("DIVERGED: %w", err)
	case errors.As(err, &pe):
		fmt.Fprintf(os.Stderr, "samsara: the recording has no end: the trace covers its %d verified chunks\n", pe.Chunks)
		return nil
	case err != nil:
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// userNote says how the trace covers user code.
func userNote(userSteps, kernelOnly bool, platform string) string {
	switch {
	case userSteps:
		return "user code single-stepped"
	case kernelOnly:
		return "user code not traced (--kernel-only)"
	}
	return "user code not traced on this platform (" + platform + ")"
}

// summary prints what the trace holds and how fast it was made.
func (t *traceFlags) summary(set *trace.Set, exp *session.Expander, cpus int, elapsed time.Duration, user string) error {
	var total, users uint64
	var bytes int64
	var per []string
	for v := range cpus {
		n := set.Instructions(v)
		total += n
		users += set.UserInstructions(v)
		per = append(per, fmt.Sprintf("vcpu%d %d", v, n))
		st, err := os.Stat(filepath.Join(t.out, trace.FileName(t.format, v)))
		if err != nil {
			return err
		}
		bytes += st.Size()
	}
	bpi := 0.0
	if total > 0 {
		bpi = float64(bytes) / float64(total)
	}
	fmt.Fprintf(os.Stderr, "samsara: trace matched the recording: %d instructions, %d of them user (%s), %d interrupt-delivering steps not written; %s, %d bytes (%.2f bytes/instruction); %.2fs, %.0f instructions/s; %s\n",
		total, users, strings.Join(per, ", "), exp.Unseen, t.out, bytes, bpi, elapsed.Seconds(), float64(total)/elapsed.Seconds(), user)
	ev := set.Events()
	fmt.Fprintf(os.Stderr, "samsara: events: %d device accesses, %d DMA writes (%d bytes), %d interrupt and exception frames (%d not found on the stack)\n",
		ev.Devices, ev.DMAs, ev.DMABytes, ev.Frames, exp.FramesUnseen)
	printWhoRan(set.WhoRan(), exp, t.out)
	return nil
}

// whoRanTop is how many processes the summary prints per vCPU (the
// trace's whoran.txt has them all).
const whoRanTop = 5

// printWhoRan prints the processes that ran the most traced
// instructions on each vCPU.
func printWhoRan(rows []trace.Ran, exp *session.Expander, dir string) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "samsara: who ran (traced instructions, chunks started, user stretches; all in %s):\n", filepath.Join(dir, trace.WhoRanFile))
	shown := map[int]int{}
	for _, r := range rows {
		if shown[r.VCPU]++; shown[r.VCPU] > whoRanTop {
			continue
		}
		fmt.Fprintf(os.Stderr, "  vcpu%d %-24s %10d insns %6d chunks %6d user\n", r.VCPU, r.Task, r.Instructions, r.Chunks, r.UserStretches)
	}
	if exp.TaskErrors > 0 {
		fmt.Fprintf(os.Stderr, "samsara: %d task reads failed (written as pid -1); the first: %s\n", exp.TaskErrors, exp.FirstTaskError)
	}
}
