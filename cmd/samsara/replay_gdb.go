package main

import (
	"fmt"
	"io"
	"net"
	"os"

	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
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
	opts := r.session.o
	opts.Logger = logger
	// Every replay the debugger starts (going backwards starts a fresh
	// one) gets a machine of its own; only the first prints the console.
	first := true
	open := func() (*vmm.Machine, *session.Session, error) {
		cfg, _, closeConsole, err := r.config(logger, path)
		if err != nil {
			return nil, nil, err
		}
		if !first {
			closeConsole()
			cfg.Console = io.Discard
		}
		first = false
		return openSession(cfg, opts, newStatusStream(-1, 0))
	}
	dbg, err := session.NewDebugger(open, records, logger)
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
