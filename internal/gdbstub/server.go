package gdbstub

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Error replies (GDB manual, E.2: "E NN", NN an errno-like number gdb
// shows only as a number).
const (
	errBadArgs     = "E01" // a malformed packet's arguments
	errNoThread    = "E02" // no such thread
	errRefused     = "E03" // a write into a replay, or a breakpoint the target refuses
	errMemory      = "E14" // EFAULT: unmapped guest memory
	errTargetError = "E05" // EIO: the target failed
)

// Server serves one Target to gdb connections, one at a time.
type Server struct {
	t   Target
	log *zap.Logger
	// gthread and cthread are the threads 'Hg' and 'Hc' selected
	// (0-based CPUs).
	gthread, cthread int
}

// NewServer returns a server for t.
func NewServer(t Target, logger *zap.Logger) *Server {
	return &Server{t: t, log: logger.Named("gdbstub")}
}

// Serve talks to one gdb over rw until it detaches, kills or
// disconnects. It returns nil on detach, kill or end of stream.
func (s *Server) Serve(rw io.ReadWriter) error {
	c := newConn(rw)
	events := make(chan event, 16)
	go c.readEvents(events)
	s.gthread, s.cthread = s.t.Stopped().Thread, s.t.Stopped().Thread
	for ev := range events {
		switch {
		case ev.err != nil:
			if errors.Is(ev.err, io.EOF) {
				return nil
			}
			return fmt.Errorf("gdb connection: %w", ev.err)
		case ev.interrupt:
			// Not running: nothing to interrupt, report where it stands.
			if err := c.send(stopReply(s.t.Stopped())); err != nil {
				return err
			}
			continue
		}
		reply, done, err := s.handle(c, ev.payload, events)
		if errors.Is(err, errGone) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.send(reply); err != nil {
			return fmt.Errorf("gdb connection: %w", err)
		}
		if ev.payload == "QStartNoAckMode" {
			c.mu.Lock()
			c.noAck = true
			c.mu.Unlock()
		}
		if done {
			return nil
		}
	}
	return nil
}

// handle answers one packet. done ends the session (detach, kill).
func (s *Server) handle(c *conn, p string, events chan event) (reply string, done bool, err error) {
	if p == "" {
		return "", false, nil
	}
	switch p[0] {
	case '?':
		return stopReply(s.t.Stopped()), false, nil
	case 'q', 'Q':
		return s.query(p), false, nil
	case 'H':
		return s.selectThread(p), false, nil
	case 'T':
		if _, ok := s.thread(p[1:]); !ok {
			return errNoThread, false, nil
		}
		return "OK", false, nil
	case 'g':
		return s.readRegisters(), false, nil
	case 'p':
		return s.readRegister(p[1:]), false, nil
	case 'G', 'P', 'M', 'X':
		// A replay cannot be changed.
		return errRefused, false, nil
	case 'm':
		return s.readMemory(p[1:]), false, nil
	case 'Z', 'z':
		return s.breakpoint(p), false, nil
	case 'c', 'C', 's', 'S', 'b':
		return s.resume(p, events)
	case 'v':
		return s.vPacket(p, events)
	case 'D':
		return "OK", true, nil
	case 'k':
		return "", true, nil
	}
	return "", false, nil
}

// thread parses a thread id ("1", "-1", "0", hex) into a 0-based CPU;
// -1 and 0 mean the current one.
func (s *Server) thread(id string) (int, bool) {
	if id == "-1" || id == "0" {
		return s.gthread, true
	}
	n, err := strconv.ParseUint(id, 16, 32)
	if err != nil || n < 1 || int(n) > s.t.Threads() {
		return 0, false
	}
	return int(n) - 1, true
}

// selectThread handles Hg and Hc.
func (s *Server) selectThread(p string) string {
	if len(p) < 2 {
		return errBadArgs
	}
	t, ok := s.thread(p[2:])
	if !ok {
		return errNoThread
	}
	switch p[1] {
	case 'g':
		s.gthread = t
	case 'c':
		if p[2:] != "-1" && p[2:] != "0" {
			s.cthread = t
		}
	default:
		return errBadArgs
	}
	return "OK"
}

// query answers the q and Q packets.
func (s *Server) query(p string) string {
	name, args, _ := strings.Cut(p, ":")
	if n, a, ok := strings.Cut(p, ","); ok && !strings.Contains(n, ":") {
		name, args = n, a
	}
	switch name {
	case "qSupported":
		return fmt.Sprintf("PacketSize=%x;qXfer:features:read+;swbreak+;hwbreak+;ReverseContinue+;ReverseStep+;QStartNoAckMode+", maxPacket)
	case "QStartNoAckMode":
		return "OK"
	case "qXfer":
		return s.xfer(args)
	case "qfThreadInfo":
		ids := make([]string, s.t.Threads())
		for i := range ids {
			ids[i] = strconv.FormatInt(int64(i+1), 16)
		}
		return "m" + strings.Join(ids, ",")
	case "qsThreadInfo":
		return "l"
	case "qThreadExtraInfo":
		t, ok := s.thread(args)
		if !ok {
			return errNoThread
		}
		return hexBytes([]byte(fmt.Sprintf("CPU#%d", t)))
	case "qC":
		return fmt.Sprintf("QC%x", s.t.Stopped().Thread+1)
	case "qAttached":
		return "1"
	case "qSymbol":
		return "OK"
	case "qRcmd":
		return s.monitor(args)
	}
	return ""
}

// xfer answers qXfer:features:read:target.xml:OFFSET,LENGTH.
func (s *Server) xfer(args string) string {
	f := strings.Split(args, ":")
	if len(f) != 4 || f[0] != "features" || f[1] != "read" {
		return ""
	}
	if f[2] != "target.xml" {
		return errBadArgs
	}
	off, n, ok := parseAddrLen(f[3])
	if !ok {
		return errBadArgs
	}
	if off >= uint64(len(targetXML)) {
		return "l"
	}
	end := off + n
	if end >= uint64(len(targetXML)) {
		return "l" + escapeBinary(targetXML[off:])
	}
	return "m" + escapeBinary(targetXML[off:end])
}

// parseAddrLen parses "ADDR,LENGTH" in hex.
func parseAddrLen(s string) (addr, n uint64, ok bool) {
	a, l, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	addr, err1 := strconv.ParseUint(a, 16, 64)
	n, err2 := strconv.ParseUint(l, 16, 64)
	return addr, n, err1 == nil && err2 == nil
}

// monitor runs "qRcmd,HEX": the output comes back hex-encoded; an error
// is shown to the user as output too (gdb prints nothing for "E NN").
func (s *Server) monitor(args string) string {
	cmd, err := hex.DecodeString(args)
	if err != nil {
		return errBadArgs
	}
	out, err := s.t.Monitor(string(cmd))
	if err != nil {
		out = fmt.Sprintf("error: %v\n", err)
	}
	if out == "" {
		return "OK"
	}
	return hexBytes([]byte(out))
}

// readRegisters answers 'g' for the Hg thread.
func (s *Server) readRegisters() string {
	r, err := s.t.Registers(s.gthread)
	if err != nil {
		s.log.Debug("read registers", zap.Error(err))
		return errTargetError
	}
	return hexBytes(r.encode())
}

// readRegister answers 'p N'.
func (s *Server) readRegister(arg string) string {
	n, err := strconv.ParseUint(arg, 16, 16)
	if err != nil {
		return errBadArgs
	}
	r, err := s.t.Registers(s.gthread)
	if err != nil {
		return errTargetError
	}
	b, ok := r.register(int(n))
	if !ok {
		return errBadArgs
	}
	return hexBytes(b)
}

// maxRead bounds one 'm' reply: twice as many hex digits must fit in
// PacketSize.
const maxRead = maxPacket/2 - 16

// readMemory answers 'm ADDR,LENGTH'.
func (s *Server) readMemory(arg string) string {
	addr, n, ok := parseAddrLen(arg)
	if !ok {
		return errBadArgs
	}
	if n > maxRead {
		n = maxRead
	}
	b, err := s.t.ReadMemory(s.gthread, addr, int(n))
	if err != nil {
		s.log.Debug("read memory", zap.Uint64("addr", addr), zap.Error(err))
		return errMemory
	}
	return hexBytes(b)
}

// breakpoint answers Z and z: 'Z TYPE,ADDR,KIND'.
func (s *Server) breakpoint(p string) string {
	f := strings.Split(p[1:], ",")
	if len(f) < 3 {
		return errBadArgs
	}
	typ, err := strconv.ParseUint(f[0], 10, 8)
	if err != nil || typ > uint64(WatchAccess) {
		return ""
	}
	addr, err1 := strconv.ParseUint(f[1], 16, 64)
	size, err2 := strconv.ParseUint(strings.SplitN(f[2], ";", 2)[0], 16, 16)
	if err1 != nil || err2 != nil {
		return errBadArgs
	}
	if p[0] == 'Z' {
		err = s.t.SetBreakpoint(BreakKind(typ), addr, int(size))
	} else {
		err = s.t.ClearBreakpoint(BreakKind(typ), addr, int(size))
	}
	if err != nil {
		s.log.Info("breakpoint refused", zap.String("packet", p), zap.Error(err))
		return errRefused
	}
	return "OK"
}
