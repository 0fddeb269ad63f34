package gdbstub

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeTarget is a two-CPU target with scripted stops.
type fakeTarget struct {
	stop    Stop
	bps     map[uint64]BreakKind
	running chan struct{} // closed when Continue starts (for Ctrl-C)
	intr    chan struct{}
	last    string // the last monitor command
}

func newFake() *fakeTarget {
	return &fakeTarget{bps: map[uint64]BreakKind{}, running: make(chan struct{}, 1), intr: make(chan struct{}, 1)}
}

func (f *fakeTarget) Threads() int  { return 2 }
func (f *fakeTarget) Stopped() Stop { return f.stop }
func (f *fakeTarget) Registers(t int) (*Registers, error) {
	r := &Registers{RIP: 0xffffffff81000000 + uint64(t), CR3: 0x1000}
	r.GPR[0] = 0x1122334455667788
	return r, nil
}
func (f *fakeTarget) ReadMemory(t int, addr uint64, n int) ([]byte, error) {
	if addr < 0x1000 {
		return nil, errors.New("unmapped")
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(addr) + byte(i)
	}
	return b, nil
}
func (f *fakeTarget) Continue() (Stop, error) {
	if len(f.bps) == 0 {
		f.running <- struct{}{}
		select {
		case <-f.intr:
			f.stop = Stop{Reason: StopInterrupt, Thread: 1}
		case <-time.After(5 * time.Second):
			return Stop{}, errors.New("fake: never interrupted")
		}
		return f.stop, nil
	}
	for a, k := range f.bps {
		if k >= WatchWrite {
			f.stop = Stop{Reason: StopWatch, Thread: 1, Addr: a, Watch: k}
		} else {
			f.stop = Stop{Reason: StopHWBreak, Thread: 1}
		}
	}
	return f.stop, nil
}
func (f *fakeTarget) Step(t int) (Stop, error) {
	f.stop = Stop{Reason: StopStep, Thread: t}
	return f.stop, nil
}
func (f *fakeTarget) ReverseContinue() (Stop, error) {
	f.stop = Stop{Reason: StopHistoryBegin, Thread: 0}
	return f.stop, nil
}
func (f *fakeTarget) ReverseStep(t int) (Stop, error) {
	return Stop{}, errors.New("fake: no history")
}
func (f *fakeTarget) Interrupt() {
	select {
	case f.intr <- struct{}{}:
	default:
	}
}
func (f *fakeTarget) SetBreakpoint(k BreakKind, addr uint64, size int) error {
	if addr < 0x8000000000000000 {
		return errors.New("user address")
	}
	f.bps[addr] = k
	return nil
}
func (f *fakeTarget) ClearBreakpoint(k BreakKind, addr uint64, size int) error {
	delete(f.bps, addr)
	return nil
}
func (f *fakeTarget) Monitor(cmd string) (string, error) {
	f.last = cmd
	if cmd == "fail" {
		return "", errors.New("no such command")
	}
	return "at " + cmd + "\n", nil
}

// client is gdb's side of a pipe.
type client struct {
	t     *testing.T
	c     net.Conn
	r     *bufio.Reader
	noAck bool
	done  chan error
}

func startServer(t *testing.T, f *fakeTarget) *client {
	t.Helper()
	a, b := net.Pipe()
	cl := &client{t: t, c: a, r: bufio.NewReader(a), done: make(chan error, 1)}
	s := NewServer(f, zap.NewNop())
	go func() { cl.done <- s.Serve(b) }()
	t.Cleanup(func() { a.Close(); b.Close() })
	a.SetDeadline(time.Now().Add(10 * time.Second))
	return cl
}

func (cl *client) sendRaw(s string) {
	cl.t.Helper()
	if _, err := cl.c.Write([]byte(s)); err != nil {
		cl.t.Fatalf("write %q: %v", s, err)
	}
}

func (cl *client) send(p string) {
	cl.t.Helper()
	cl.sendRaw(fmt.Sprintf("$%s#%02x", p, checksum(p)))
	if !cl.noAck {
		cl.expectAck('+')
	}
}

func (cl *client) expectAck(want byte) {
	cl.t.Helper()
	b, err := cl.r.ReadByte()
	if err != nil || b != want {
		cl.t.Fatalf("ack: got %q (%v), want %q", b, err, want)
	}
}

// reply reads one packet and checks its checksum.
func (cl *client) reply() string {
	cl.t.Helper()
	if b, err := cl.r.ReadByte(); err != nil || b != '$' {
		cl.t.Fatalf("reply: got %q (%v), want '$'", b, err)
	}
	s, err := cl.r.ReadString('#')
	if err != nil {
		cl.t.Fatal(err)
	}
	s = s[:len(s)-1]
	var cs [2]byte
	cl.r.Read(cs[:1])
	cl.r.Read(cs[1:])
	if want := fmt.Sprintf("%02x", checksum(s)); string(cs[:]) != want {
		cl.t.Fatalf("reply %q: checksum %s, want %s", s, cs, want)
	}
	if !cl.noAck {
		cl.sendRaw("+")
	}
	return s
}

func (cl *client) ask(p string) string {
	cl.t.Helper()
	cl.send(p)
	return cl.reply()
}

func TestPackets(t *testing.T) {
	f := newFake()
	cl := startServer(t, f)
	for _, c := range []struct{ in, want string }{
		{"qSupported:multiprocess+;swbreak+;hwbreak+", "PacketSize=4000;qXfer:features:read+;swbreak+;hwbreak+;ReverseContinue+;ReverseStep+;QStartNoAckMode+"},
		{"?", "T05thread:1;"},
		{"qfThreadInfo", "m1,2"},
		{"qsThreadInfo", "l"},
		{"qThreadExtraInfo,2", hex.EncodeToString([]byte("CPU#1"))},
		{"qThreadExtraInfo,3", "E02"},
		{"Hg2", "OK"},
		{"Hg9", "E02"},
		{"Hc-1", "OK"},
		{"T1", "OK"},
		{"T5", "E02"},
		{"p10", "01000081ffffffff"}, // rip of thread 2 (Hg2)
		{"p0", "8877665544332211"},
		{"p99", "E01"},
		{"pzz", "E01"},
		{"m2000,4", "00010203"},
		{"m10,4", "E14"},
		{"m2000", "E01"},
		{"G00", "E03"},
		{"P10=00", "E03"},
		{"M2000,1:00", "E03"},
		{"X2000,0:", "E03"},
		{"Z1,ffffffff81000000,1", "OK"},
		{"Z0,400000,1", "E03"},
		{"Z9,0,1", ""},
		{"Z1,zz", "E01"},
		{"z1,ffffffff81000000,1", "OK"},
		{"qRcmd," + hex.EncodeToString([]byte("when")), hex.EncodeToString([]byte("at when\n"))},
		{"qRcmd," + hex.EncodeToString([]byte("fail")), hex.EncodeToString([]byte("error: no such command\n"))},
		{"qRcmd,zz", "E01"},
		{"vMustReplyEmpty", ""},
		{"qTStatus", ""},
		{"!", ""},
		{"bs", "E05"},
		{"bc", "T05thread:1;replaylog:begin;"},
		{"vCont?", "vCont;c;C;s;S"},
		{"vCont;s:2;c", "T05thread:2;"},
		{"vCont;s:7", "E02"},
		{"vCont;", "E01"},
		{"s", "T05thread:2;"},
		{"s 1234", "E03"},
	} {
		if got := cl.ask(c.in); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRegistersLayout checks the 'g' reply's size against the target
// description's register sizes.
func TestRegistersLayout(t *testing.T) {
	cl := startServer(t, newFake())
	g := cl.ask("g")
	want := 0
	for _, s := range regSizes {
		want += s
	}
	if len(g) != 2*want {
		t.Fatalf("g reply is %d hex digits, want %d", len(g), 2*want)
	}
	if n := strings.Count(targetXML, "<reg "); n != len(regSizes) {
		t.Fatalf("target description has %d registers, regSizes %d", n, len(regSizes))
	}
	for _, name := range []string{`"cr3"`, `"efer"`, `"fs_base"`, `"st7"`, `"xmm15"`, `"mxcsr"`, `"eflags"`, `"gs"`} {
		if !strings.Contains(targetXML, "name="+name) {
			t.Errorf("target description lacks %s", name)
		}
	}
}

func TestTargetXMLTransfer(t *testing.T) {
	cl := startServer(t, newFake())
	var doc strings.Builder
	for off := 0; ; off += 0x100 {
		r := cl.ask(fmt.Sprintf("qXfer:features:read:target.xml:%x,100", off))
		if r == "" || (r[0] != 'm' && r[0] != 'l') {
			t.Fatalf("qXfer at %#x: %q", off, r)
		}
		doc.WriteString(r[1:])
		if r[0] == 'l' {
			break
		}
	}
	if doc.String() != escapeBinary(targetXML) {
		t.Fatalf("transferred description differs from targetXML")
	}
	if got := cl.ask("qXfer:features:read:other.xml:0,100"); got != "E01" {
		t.Errorf("unknown annex: %q", got)
	}
	if got := cl.ask("qXfer:features:read:target.xml:zz"); got != "E01" {
		t.Errorf("bad offset: %q", got)
	}
	if got := cl.ask(fmt.Sprintf("qXfer:features:read:target.xml:%x,10", len(targetXML)+5)); got != "l" {
		t.Errorf("past the end: %q", got)
	}
}

// TestMalformed sends broken framing: the server refuses it and keeps
// serving.
func TestMalformed(t *testing.T) {
	cl := startServer(t, newFake())
	cl.sendRaw("$qC#00") // bad checksum
	cl.expectAck('-')
	cl.sendRaw("$qC#zz") // checksum not hex
	cl.expectAck('-')
	cl.sendRaw("garbage+-") // noise outside packets
	cl.sendRaw("$qAtt$qC#" + fmt.Sprintf("%02x", checksum("qC")))
	cl.expectAck('+')
	if got := cl.reply(); got != "QC1" {
		t.Errorf("packet restarted by '$': got %q", got)
	}
	cl.sendRaw("$" + strings.Repeat("x", maxPacket+10) + "#00")
	cl.expectAck('-')
	if got := cl.ask(""); got != "" {
		t.Errorf("empty packet: %q", got)
	}
	if got := cl.ask("qAttached"); got != "1" {
		t.Errorf("after malformed packets: %q", got)
	}
}

func TestNoAckMode(t *testing.T) {
	cl := startServer(t, newFake())
	if got := cl.ask("QStartNoAckMode"); got != "OK" {
		t.Fatalf("QStartNoAckMode: %q", got)
	}
	cl.noAck = true
	if got := cl.ask("qC"); got != "QC1" {
		t.Fatalf("qC without acks: %q", got)
	}
	cl.sendRaw("$qC#00") // bad checksum: no '-' any more, dropped
	if got := cl.ask("qAttached"); got != "1" {
		t.Fatalf("after a dropped packet: %q", got)
	}
}

func TestStopReplies(t *testing.T) {
	f := newFake()
	cl := startServer(t, f)
	if got := cl.ask("Z2,ffff888000001000,8"); got != "OK" {
		t.Fatal(got)
	}
	if got := cl.ask("c"); got != "T05thread:2;watch:ffff888000001000;" {
		t.Errorf("watchpoint stop: %q", got)
	}
	cl.ask("z2,ffff888000001000,8")
	cl.ask("Z4,ffff888000002000,4")
	if got := cl.ask("c"); got != "T05thread:2;awatch:ffff888000002000;" {
		t.Errorf("access watchpoint stop: %q", got)
	}
	cl.ask("z4,ffff888000002000,4")
	cl.ask("Z1,ffffffff81000010,1")
	if got := cl.ask("c"); got != "T05thread:2;hwbreak:;" {
		t.Errorf("breakpoint stop: %q", got)
	}
	for st, want := range map[StopReason]string{StopSWBreak: "T05thread:1;swbreak:;", StopHistoryEnd: "T05thread:1;replaylog:end;", StopInterrupt: "T02thread:1;"} {
		if got := stopReply(Stop{Reason: st}); got != want {
			t.Errorf("stop %d: %q, want %q", st, got, want)
		}
	}
	if got := stopReply(Stop{Reason: StopExited, ExitCode: 3}); got != "W03" {
		t.Errorf("exit: %q", got)
	}
}

// TestInterrupt sends Ctrl-C while the target runs.
func TestInterrupt(t *testing.T) {
	f := newFake()
	cl := startServer(t, f)
	cl.send("c")
	<-f.running
	cl.sendRaw("\x03")
	if got := cl.reply(); got != "T02thread:2;" {
		t.Fatalf("after Ctrl-C: %q", got)
	}
	// Ctrl-C while stopped: the current stop again.
	cl.sendRaw("\x03")
	if got := cl.reply(); got != "T02thread:2;" {
		t.Fatalf("Ctrl-C while stopped: %q", got)
	}
}

// TestDisconnect: a gdb that goes away while the target runs interrupts
// it and ends Serve without an error; so does detach.
func TestDisconnect(t *testing.T) {
	f := newFake()
	cl := startServer(t, f)
	cl.send("c")
	<-f.running
	cl.c.Close()
	select {
	case err := <-cl.done:
		if err != nil {
			t.Fatalf("Serve after disconnect: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the disconnect")
	}
	cl = startServer(t, newFake())
	if got := cl.ask("D"); got != "OK" {
		t.Fatalf("D: %q", got)
	}
	if err := <-cl.done; err != nil {
		t.Fatalf("Serve after detach: %v", err)
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:0", false, true},
		{"localhost:0", false, true},
		{"[::1]:0", false, true},
		{"0.0.0.0:0", false, false},
		{":0", false, false},
		{"0.0.0.0:0", true, true},
		{"nonsense", false, false},
		{t.TempDir() + "/gdb.sock", false, true},
	} {
		l, err := Listen(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("Listen(%q, %v): %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
		if l != nil {
			l.Close()
		}
	}
}
