package main

import (
	"fmt"
	"io"
	"net"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/nde"
	"github.com/samsara-vmm/samsara/internal/session"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// debug serves the recording in path to gdb (replay --gdb ADDR): the
// replay stops before its first chunk; gdb drives it forwards and
// backwards (internal/session, debug_target.go) until it detaches.
func (r *replayFlags) debug(logger *zap.Logger, path string) error {
	l, err := gdbstub.Listen(r.gdb, r.gdbAllowRemote)
	if err != nil {
		return err
	}
	defer l.Close()
	_, records, closeConsole, err := r.config(logger, path)
	if err != nil {
		return err
	}
	closeConsole()
	// The debugger's refusals and the replay's outcome must reach the
	// user even without -v.
	logger = atLeast(logger, zapcore.InfoLevel)
	opts := r.session.o
	opts.Logger = logger
	// On PVM every guest kernel instruction is emulated and the emulator
	// ignores data breakpoints: the debugger finds watched writes by
	// single-stepping instead (internal/session, debug_hook.go).
	opts.KernelCount = hostPlatform() == log.PlatformPVM
	// Every replay the debugger starts (going backwards starts a fresh
	// one) gets a machine of its own; only the first prints the console.
	first := true
	open := func(ckpt string, recs []log.Record) (*vmm.Machine, *session.Session, error) {
		cfg, _, closeConsole, err := r.config(logger, path)
		if err != nil {
			return nil, nil, err
		}
		if !first {
			closeConsole()
			cfg.Console = io.Discard
		}
		first = false
		if ckpt != "" {
			// One of the debugger's own checkpoints, taken during an
			// earlier replay: the rest of the recording from there.
			cfg.FromCheckpoint, cfg.NDE = ckpt, nde.NewReplay(recs)
		}
		return openSession(cfg, opts, newStatusStream(-1, 0))
	}
	dbg, err := session.NewDebugger(open, records, r.gdbCkptEvery, logger)
	if err != nil {
		return err
	}
	defer dbg.Close()
	fmt.Fprintf(os.Stderr, "samsara: replay of %s stopped before its first chunk; attach with:\n  gdb build/vmlinux -ex 'target remote %s'\n", path, l.Addr())
	conn, err := l.Accept()
	if err != nil {
		return fmt.Errorf("gdb server: %w", err)
	}
	defer conn.Close()
	if tcp, ok := conn.(*net.TCPConn); ok {
		// Small packets, one at a time: no Nagle delay.
		tcp.SetNoDelay(true)
	}
	return gdbstub.NewServer(dbg, logger).Serve(conn)
}

// atLeast returns logger, or, when it does not log at level (no -v: a
// no-op logger), a console logger from level up, for messages the user
// must see anyway.
func atLeast(logger *zap.Logger, level zapcore.Level) *zap.Logger {
	if logger.Core().Enabled(level) {
		return logger
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace, cfg.DisableCaller = true, true
	if l, err := cfg.Build(); err == nil {
		return l
	}
	return logger
}
