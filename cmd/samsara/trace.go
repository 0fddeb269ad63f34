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
)

func newTraceCmd(logger func() *zap.Logger) *cobra.Command {
	var t traceFlags
	cmd := &cobra.Command{
		Use:   "trace rec.zst -o DIR [--format native|text|champsim] [--vcpu N] [--chunks A-B] [--from C.I] [--to C.I] [replay's machine flags]",
		Short: "Replay a recording, verify it, and expand it into an execution trace of every single-steppable instruction",
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
	fl.BoolVar(&t.kernelOnly, "kernel-only", true, "trace guest kernel code only (the only choice where user code cannot be single-stepped, as under PVM)")
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
	values     bool
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
	if !t.kernelOnly {
		// expandStep never steps CPL3: user code is traced nowhere yet.
		return fmt.Errorf("--kernel-only=false: user code is not traced yet (under PVM it cannot be single-stepped at all: shared/PLATFORM.md)")
	}
	exp := &session.Expander{VCPU: t.vcpu, Values: t.values}
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
		set.Abort()
		return err
	}
	if err := set.Finish(); err != nil {
		return err
	}
	return t.summary(set, exp, cfg.CPUs, elapsed)
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

// summary prints what the trace holds and how fast it was made.
func (t *traceFlags) summary(set *trace.Set, exp *session.Expander, cpus int, elapsed time.Duration) error {
	var total uint64
	var bytes int64
	var per []string
	for v := range cpus {
		n := set.Instructions(v)
		total += n
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
	fmt.Fprintf(os.Stderr, "samsara: trace matched the recording: %d kernel instructions (%s), %d interrupt-delivering steps not written; %s, %d bytes (%.2f bytes/instruction); %.2fs, %.0f instructions/s; user code not traced on this platform\n",
		total, strings.Join(per, ", "), exp.Unseen, t.out, bytes, bpi, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	return nil
}
