package gdbstub

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"
)

// Signals of stop replies (gdb's own numbering, include/gdb/signals.def).
const (
	sigINT  = 0x02 // GDB_SIGNAL_INT: interrupted (Ctrl-C)
	sigTRAP = 0x05 // GDB_SIGNAL_TRAP: breakpoint, step
)

// stopReply is the T packet for a stop (GDB manual, E.3).
func stopReply(st Stop) string {
	if st.Reason == StopExited {
		return fmt.Sprintf("W%02x", st.ExitCode&0xff)
	}
	sig := sigTRAP
	if st.Reason == StopInterrupt {
		sig = sigINT
	}
	r := fmt.Sprintf("T%02xthread:%x;", sig, st.Thread+1)
	switch st.Reason {
	case StopSWBreak:
		r += "swbreak:;"
	case StopHWBreak:
		r += "hwbreak:;"
	case StopWatch:
		name := map[BreakKind]string{WatchRead: "rwatch", WatchAccess: "awatch"}[st.Watch]
		if name == "" {
			name = "watch"
		}
		r += fmt.Sprintf("%s:%x;", name, st.Addr)
	case StopHistoryBegin:
		r += "replaylog:begin;"
	case StopHistoryEnd:
		r += "replaylog:end;"
	}
	return r
}

// resume answers c, C, s, S, bc and bs: it runs the target and replies
// with the stop. The signal of C and S is ignored: a replay cannot
// deliver one.
func (s *Server) resume(p string, events chan event) (string, bool, error) {
	var op func() (Stop, error)
	switch {
	case p == "bc":
		op = s.t.ReverseContinue
	case p == "bs":
		t := s.cthread
		op = func() (Stop, error) { return s.t.ReverseStep(t) }
	case p[0] == 'c' || p[0] == 'C':
		op = s.t.Continue
	case p[0] == 's' || p[0] == 'S':
		if len(p) > 1 && p[0] == 's' {
			// "s ADDR" resumes at ADDR: a replay cannot jump.
			return errRefused, false, nil
		}
		t := s.cthread
		op = func() (Stop, error) { return s.t.Step(t) }
	default:
		return "", false, nil
	}
	return s.run(op, events)
}

// vPacket answers the v packets: vCont (c and s with a thread) and
// vMustReplyEmpty; vKill ends the session.
func (s *Server) vPacket(p string, events chan event) (string, bool, error) {
	switch {
	case p == "vCont?":
		return "vCont;c;C;s;S", false, nil
	case strings.HasPrefix(p, "vCont;"):
		return s.vCont(p[len("vCont;"):], events)
	case strings.HasPrefix(p, "vKill"):
		return "OK", true, nil
	}
	return "", false, nil
}

// vCont runs the first action: a step names its thread ("s:2"); every
// other thread continues, which in a replay means they run as the
// recording's order says.
func (s *Server) vCont(actions string, events chan event) (string, bool, error) {
	for _, a := range strings.Split(actions, ";") {
		act, tid, _ := strings.Cut(a, ":")
		if act == "" {
			return errBadArgs, false, nil
		}
		switch act[0] {
		case 's', 'S':
			t := s.cthread
			if tid != "" {
				var ok bool
				if t, ok = s.thread(tid); !ok {
					return errNoThread, false, nil
				}
			}
			return s.run(func() (Stop, error) { return s.t.Step(t) }, events)
		case 'c', 'C':
			return s.run(s.t.Continue, events)
		}
	}
	return errBadArgs, false, nil
}

// errGone is a gdb that disconnected while the target ran: the session
// ends without error.
var errGone = errors.New("gdb disconnected")

// run runs op while still reading the connection: a Ctrl-C interrupts
// the target; a disconnect interrupts it and ends the session once op
// has returned.
func (s *Server) run(op func() (Stop, error), events chan event) (string, bool, error) {
	type result struct {
		st  Stop
		err error
	}
	res := make(chan result, 1)
	go func() {
		st, err := op()
		res <- result{st, err}
	}()
	var connErr error
	for {
		select {
		case r := <-res:
			if connErr != nil {
				if errors.Is(connErr, io.EOF) {
					connErr = errGone
				}
				return "", true, connErr
			}
			if r.err != nil {
				s.log.Warn("target", zap.Error(r.err))
				return errTargetError, false, nil
			}
			s.gthread, s.cthread = r.st.Thread, r.st.Thread
			return stopReply(r.st), false, nil
		case ev := <-events:
			switch {
			case ev.err != nil:
				connErr = ev.err
				s.t.Interrupt()
				// No more events will come: only wait for op.
				events = nil
			case ev.interrupt:
				s.t.Interrupt()
			}
			// A packet while running is a protocol error in all-stop
			// mode: ignored.
		}
	}
}
