package tests

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// gdbPath is Debian's gdb, which `make deps` installs (guest-images/deps.txt).
const gdbPath = "/usr/bin/gdb"

// gdbTimeout bounds the whole gdb session (about 30 replays of a short
// recording, each under a second here).
const gdbTimeout = 5 * time.Minute

// TestGDB debugs a 2-vCPU replay with the real gdb in batch mode (issue
// 15): threads, memory, hardware breakpoints forwards and backwards,
// stepi and reverse-stepi, the start of the history, a watchpoint both
// ways, and machine hashes that match between going forwards and coming
// back. A final continue, single-stepping under a watchpoint, runs the
// replay to its end, which must still match the recording (the debugger
// never changes the guest).
func TestGDB(t *testing.T) {
	requireGDB(t)
	ckpt := bootedCheckpoint(t, 2)
	_, rec := recordAndReplayN(t, 0, 2, ckpt, nil, "threads2", "1000")
	addr, srv := startGDBServer(t, rec, ckpt)
	out := runGDB(t, addr, gdbScript())
	stderr := srv.wait(t)
	defer func() {
		if t.Failed() {
			t.Logf("replay --gdb's log:\n%s", tail(stderr))
		}
	}()
	s := splitSections(out)
	checkThreadsAndMemory(t, s)
	hits := checkBreakpointHits(t, s)
	checkSteps(t, s)
	if !strings.Contains(s["checkpoint"], "checkpoint 1 at position "+hits[2].position) || !strings.Contains(s["checkpoint"], "1: position "+hits[2].position) {
		t.Errorf("monitor checkpoint at the third hit (%s):\n%s", hits[2].position, s["checkpoint"])
	}
	// By the end of the session the replay has run forward through every
	// chunk, single-stepping, for well over 100 ms: machine checkpoints
	// must have been taken before some chunks. (Not yet at the third
	// hit: a recording whose first chunk holds three __schedule hits has
	// crossed no chunk boundary by then; CI saw one, 2026-12-06.)
	if !regexp.MustCompile(`machine checkpoints .*before chunks \[\d+`).MatchString(s["end-checkpoints"]) {
		t.Errorf("no machine checkpoint was taken (--gdb-checkpoint-every 100ms):\n%s", s["end-checkpoints"])
	}
	if got := parseStop(s["seek"]); got.position != hits[2].position || got.hash != hits[2].hash {
		t.Errorf("seek to the checkpoint at the third hit: %+v, the hit was %+v\n%s", got, hits[2], s["seek"])
	}
	if !strings.Contains(s["seek-chunk"], "position 0\n") {
		t.Errorf("monitor seek 0:\n%s", s["seek-chunk"])
	}
	if !strings.Contains(s["begin"], "No more reverse-execution history") || !strings.Contains(s["begin-when"], "position 0\n") {
		t.Errorf("reverse-continue with no earlier hit:\n%s\n%s", s["begin"], s["begin-when"])
	}
	checkWatch(t, s)
	if !strings.Contains(stderr, "replay reached the end of the recording and matched it") {
		t.Errorf("the replay under the debugger did not end matching the recording:\n%s\nhits %v", tail(stderr), hits)
	}
	checkInterrupt(t, rec, ckpt)
}

// requireGDB skips without Debian's gdb, except in CI, where `make deps`
// must have installed it.
func requireGDB(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(gdbPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("gdb missing in CI (make deps installs it): %v", err)
		}
		t.Skipf("needs %s (make deps): %v", gdbPath, err)
	}
}

// checkInterrupt sends Ctrl-C (0x03) to a running continue over the raw
// protocol (gdb's batch mode cannot): the replay stops with SIGINT and
// keeps serving. A watchpoint on bytes that are never written, in the
// spinlock code's page, keeps the replay slow long enough to be
// interrupted: under PVM every kernel instruction is single-stepped while
// a watchpoint is set; without a counter every access to the watched
// page traps and is stepped (debug_page.go). (A watchpoint on
// oops_in_progress let the emulated SVM host's replay run to its end
// within the second.)
func checkInterrupt(t *testing.T, rec, ckpt string) {
	t.Helper()
	addr, srv := startGDBServer(t, rec, ckpt)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	send := func(p string) { fmt.Fprintf(c, "$%s#%02x", p, gdbChecksum(p)) }
	reply := func() string {
		for {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("reading a reply: %v", err)
			}
			if b == '$' {
				break
			}
		}
		body, err := r.ReadString('#')
		if err != nil {
			t.Fatalf("reading a reply: %v", err)
		}
		r.Discard(2)
		c.Write([]byte("+"))
		return strings.TrimSuffix(body, "#")
	}
	ask := func(p string) string { send(p); return reply() }
	if got := ask(fmt.Sprintf("Z2,%x,4", kernelSymbol(t, "_raw_spin_lock"))); got != "OK" {
		t.Fatalf("watchpoint: %q", got)
	}
	start := time.Now()
	send("c")
	time.Sleep(time.Second)
	c.Write([]byte{0x03})
	if got := reply(); !strings.HasPrefix(got, "T02thread:") {
		t.Errorf("stop reply to continue after Ctrl-C: %q", got)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Ctrl-C took %v to stop the replay", d)
	}
	if got := ask("qRcmd," + hex.EncodeToString([]byte("when"))); !strings.HasPrefix(got, hex.EncodeToString([]byte("position "))) {
		t.Errorf("monitor when after Ctrl-C: %q", got)
	}
	ask("D")
	srv.wait(t)
}

// gdbChecksum is a packet's checksum (the byte sum modulo 256).
func gdbChecksum(p string) byte {
	var s byte
	for i := 0; i < len(p); i++ {
		s += p[i]
	}
	return s
}

// kernelSymbol is a symbol's address in the guest kernel's System.map.
func kernelSymbol(t *testing.T, name string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(buildDir, "System.map"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == name {
			var a uint64
			fmt.Sscanf(f[0], "%x", &a)
			return a
		}
	}
	t.Fatalf("%s not in System.map", name)
	return 0
}

// gdbScript is the session, in sections (echo @@NAME) that the checks
// read.
func gdbScript() []string {
	var c []string
	sec := func(name string, cmds ...string) {
		c = append(c, `echo @@`+name+`\n`)
		c = append(c, cmds...)
	}
	sec("threads", "info threads")
	sec("banner", "x/s &linux_banner")
	sec("cr3", "info registers cr3")
	sec("break", "hbreak __schedule")
	for i := 1; i <= 3; i++ {
		sec(fmt.Sprintf("hit%d", i), "continue", "monitor when", "monitor hash", "p/x $pc")
	}
	sec("checkpoint", "monitor checkpoint", "monitor info checkpoints")
	for _, i := range []int{2, 1} {
		sec(fmt.Sprintf("back%d", i), "reverse-continue", "monitor when", "monitor hash", "p/x $pc")
	}
	for i := 0; i < 10; i++ {
		sec(fmt.Sprintf("stepi%d", i), "stepi", "p/x $pc")
	}
	for i := 0; i < 10; i++ {
		sec(fmt.Sprintf("rstepi%d", i), "reverse-stepi", "p/x $pc")
	}
	sec("rstep-hash", "monitor hash")
	// A reverse-stepi with no forward step to retrace: the instruction
	// before the first hit, found by single-stepping a fresh replay.
	sec("trace-back", "reverse-stepi", "p/x $pc", "monitor when")
	sec("trace-fwd", "stepi", "p/x $pc", "monitor when", "monitor hash")
	sec("begin", "reverse-continue")
	sec("begin-when", "monitor when")
	// A plain forward replay (no breakpoints) to the third hit, by seek.
	sec("seek", "monitor seek checkpoint1", "monitor hash")
	sec("seek-chunk", "monitor seek 0")
	sec("watch", "delete", "watch *(long *)&jiffies", "continue")
	sec("watch2", "continue")
	sec("watch-back", "reverse-continue")
	// To the end with a watchpoint that never fires: every guest kernel
	// instruction from here on is single-stepped (on PVM), and the replay
	// must still match.
	sec("end", "delete", "watch *(int *)&oops_in_progress", "continue")
	sec("end-checkpoints", "monitor info checkpoints")
	return c
}

// checkThreadsAndMemory: both vCPUs are threads, kernel memory reads by
// symbol, and the control registers are there.
func checkThreadsAndMemory(t *testing.T, s map[string]string) {
	t.Helper()
	for _, want := range []string{"Thread 1 (CPU#0)", "Thread 2 (CPU#1)"} {
		if !strings.Contains(s["threads"], want) {
			t.Errorf("info threads lacks %q:\n%s", want, s["threads"])
		}
	}
	if !strings.Contains(s["banner"], `"Linux version`) {
		t.Errorf("x/s &linux_banner:\n%s", s["banner"])
	}
	if !regexp.MustCompile(`cr3\s+0x[0-9a-f]+`).MatchString(s["cr3"]) {
		t.Errorf("info registers cr3:\n%s", s["cr3"])
	}
}

// stopAt is one stop as gdb and `monitor when` report it.
type stopAt struct {
	thread, pc, position, hash string
}

var (
	threadRe   = regexp.MustCompile(`Thread (\d+) hit`)
	pcRe       = regexp.MustCompile(`\$\d+ = (0x[0-9a-f]+)`)
	positionRe = regexp.MustCompile(`position (\S+)\n`)
	hashRe     = regexp.MustCompile(`hash ([0-9a-f]+) `)
)

// parseStop reads a section's stop.
func parseStop(sec string) stopAt {
	get := func(re *regexp.Regexp) string {
		if m := re.FindStringSubmatch(sec); m != nil {
			return m[1]
		}
		return ""
	}
	return stopAt{thread: get(threadRe), pc: get(pcRe), position: get(positionRe), hash: get(hashRe)}
}

// checkBreakpointHits: three forward hits at three positions, and two
// reverse-continues back to the second and the first, with the same
// thread, PC and machine hash.
func checkBreakpointHits(t *testing.T, s map[string]string) []stopAt {
	t.Helper()
	var hits []stopAt
	for i := 1; i <= 3; i++ {
		h := parseStop(s[fmt.Sprintf("hit%d", i)])
		if h.thread == "" || h.position == "" || h.hash == "" || !strings.Contains(s[fmt.Sprintf("hit%d", i)], "__schedule") {
			t.Fatalf("continue %d did not stop at the breakpoint:\n%s", i, s[fmt.Sprintf("hit%d", i)])
		}
		hits = append(hits, h)
	}
	// Without a counter (SVM/VMX) two points of one stretch between exits
	// print the same position: the hash tells them apart.
	if hits[0] == hits[1] || hits[1] == hits[2] {
		t.Errorf("the three hits are not three positions: %+v", hits)
	}
	for _, i := range []int{2, 1} {
		got := parseStop(s[fmt.Sprintf("back%d", i)])
		if got != hits[i-1] {
			t.Errorf("reverse-continue to hit %d: got %+v, forward hit was %+v\n%s", i, got, hits[i-1], s[fmt.Sprintf("back%d", i)])
		}
	}
	return hits
}

// checkSteps: ten reverse-stepi retrace ten stepi, and the hash after
// them is the first hit's.
func checkSteps(t *testing.T, s map[string]string) {
	t.Helper()
	start := parseStop(s["back1"])
	fwd := []string{start.pc}
	for i := 0; i < 10; i++ {
		pc := parseStop(s[fmt.Sprintf("stepi%d", i)]).pc
		if pc == "" {
			t.Fatalf("stepi %d:\n%s", i, s[fmt.Sprintf("stepi%d", i)])
		}
		fwd = append(fwd, pc)
	}
	for i := 0; i < 10; i++ {
		got := parseStop(s[fmt.Sprintf("rstepi%d", i)]).pc
		if want := fwd[9-i]; got != want {
			t.Errorf("reverse-stepi %d: pc %s, want %s (forward pcs %v)\n%s", i+1, got, want, fwd, s[fmt.Sprintf("rstepi%d", i)])
		}
	}
	if h := parseStop(s["rstep-hash"]).hash; h != start.hash {
		t.Errorf("hash after 10 stepi and 10 reverse-stepi: %s, at the hit %s", h, start.hash)
	}
	back, fwd1 := parseStop(s["trace-back"]), parseStop(s["trace-fwd"])
	var c, e, n, c2, e2, n2 int
	fmt.Sscanf(start.position, "%d.%d.%d", &c, &e, &n)
	fmt.Sscanf(back.position, "%d.%d.%d", &c2, &e2, &n2)
	// Under PVM the position counts kernel instructions: one fewer.
	// Without a counter it stays the stretch's (debug_page.go).
	wantN := n - 1
	if !onPVM() {
		wantN = n
	}
	if c2 != c || e2 != e || n2 != wantN || back.pc == "" || back.pc == start.pc {
		t.Errorf("reverse-stepi from the hit at %s (pc %s) went to %s (pc %s)", start.position, start.pc, back.position, back.pc)
	}
	if fwd1.pc != start.pc || fwd1.position != start.position || fwd1.hash != start.hash {
		t.Errorf("stepi after it: %+v, the hit was %+v", fwd1, start)
	}
}

// checkWatch: a watchpoint on jiffies shows old and new values going
// forwards, and the same values swapped going back.
func checkWatch(t *testing.T, s map[string]string) {
	t.Helper()
	valRe := regexp.MustCompile(`Old value = (\d+)\nNew value = (\d+)`)
	w1, w2, wb := valRe.FindStringSubmatch(s["watch"]), valRe.FindStringSubmatch(s["watch2"]), valRe.FindStringSubmatch(s["watch-back"])
	if w1 == nil || w2 == nil || wb == nil {
		t.Fatalf("watchpoint stops:\n%s\n%s\n%s", s["watch"], s["watch2"], s["watch-back"])
	}
	if w1[1] == w1[2] || w2[1] != w1[2] {
		t.Errorf("forward watchpoint values: %v then %v", w1[1:], w2[1:])
	}
	if wb[1] != w2[2] || wb[2] != w2[1] {
		t.Errorf("reverse-continue to the write: old/new %v, want %v swapped", wb[1:], w2[1:])
	}
}

// splitSections cuts gdb's output at the @@NAME markers.
func splitSections(out string) map[string]string {
	s := map[string]string{}
	name := ""
	for _, part := range strings.Split(out, "@@") {
		if name != "" || part != "" {
			n, body, _ := strings.Cut(part, "\n")
			if name = n; name != "" {
				s[name] = body
			}
		}
	}
	return s
}

// gdbServer is a running `samsara replay --gdb`.
type gdbServer struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   chan struct{}
}

// startGDBServer starts the replay's gdb server on a free loopback port
// and returns the address it printed.
func startGDBServer(t *testing.T, rec, ckpt string) (string, *gdbServer) {
	t.Helper()
	// Checkpoints every 100 ms: this short replay (under a second) gets
	// a few, so going back starts from them too.
	cmd := exec.Command(samsaraBin, "replay", rec, "--from-checkpoint", ckpt, "--gdb", "127.0.0.1:0",
		"--gdb-checkpoint-every", "100ms", "--console", filepath.Join(t.TempDir(), "console"))
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv := &gdbServer{cmd: cmd, stderr: &strings.Builder{}, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		defer close(srv.done)
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`target remote (\S+)'`)
		for sc.Scan() {
			srv.stderr.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case a := <-addrc:
		return a, srv
	case <-srv.done:
		t.Fatalf("replay --gdb exited before it printed an address:\n%s", srv.stderr.String())
	case <-time.After(resumeTimeout):
		cmd.Process.Kill()
		<-srv.done
		t.Fatalf("replay --gdb printed no address in %v:\n%s", resumeTimeout, srv.stderr.String())
	}
	return "", nil
}

// wait returns the server's stderr once it has exited (gdb detached).
func (s *gdbServer) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("replay --gdb did not exit within a minute of gdb's detach")
	}
	return s.stderr.String()
}

// runGDB runs gdb in batch mode on the guest's vmlinux with cmds.
func runGDB(t *testing.T, addr string, cmds []string) string {
	t.Helper()
	args := []string{"-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", "target remote " + addr}
	for _, c := range cmds {
		args = append(args, "-ex", c)
	}
	args = append(args, filepath.Join(buildDir, "vmlinux"))
	cmd := exec.Command(gdbPath, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(gdbTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("gdb did not finish in %v:\n%s", gdbTimeout, tail(string(out)))
	}
	if err != nil {
		t.Logf("gdb: %v", err)
	}
	t.Logf("gdb session:\n%s", out)
	return string(out)
}

// TestGDBUserBreakpoint puts a breakpoint in a user program's function,
// race's worker (issue 15). On hardware virtualization both threads hit
// it, on both vCPUs, and from the end of the recording reverse-continue
// goes back to the second hit and then the first (same thread, PC and
// machine hash). Under PVM a user
// breakpoint is refused, and gdb says why it could not insert it.
func TestGDBUserBreakpoint(t *testing.T) {
	requireGDB(t)
	ckpt := bootedCheckpoint(t, 2)
	out, rec := recordAndReplayN(t, 0, 2, ckpt, nil, "race", "20000")
	m := regexp.MustCompile(`race: worker=0x([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("race did not print its worker's address:\n%s", out)
	}
	worker := "0x" + m[1]
	addr, srv := startGDBServer(t, rec, ckpt)
	var cmds []string
	sec := func(name string, c ...string) { cmds = append(append(cmds, `echo @@`+name+`\n`), c...) }
	sec("break", "hbreak *"+worker)
	for i := 1; i <= 2; i++ {
		sec(fmt.Sprintf("hit%d", i), "continue", "monitor when", "monitor hash", "p/x $pc")
	}
	// On to the end (no third hit), then back over both hits.
	sec("to-end", "continue")
	for _, i := range []int{2, 1} {
		sec(fmt.Sprintf("back%d", i), "reverse-continue", "monitor when", "monitor hash", "p/x $pc")
	}
	sec("end", "delete", "continue")
	s := splitSections(runGDB(t, addr, cmds))
	stderr := srv.wait(t)
	defer func() {
		if t.Failed() {
			t.Logf("replay --gdb's log:\n%s", tail(stderr))
		}
	}()
	if onPVM() {
		// gdb prints only that it could not insert it; the server's log
		// says why.
		if !strings.Contains(s["hit1"], "Could not insert hardware breakpoint") || !strings.Contains(stderr, "is a guest user address: under PVM") {
			t.Errorf("under PVM a breakpoint at the user address %s must be refused, with the reason in the log:\n%s\nserver:\n%s", worker, s["hit1"], tail(stderr))
		}
		return
	}
	var hits []stopAt
	for i := 1; i <= 2; i++ {
		h := parseStop(s[fmt.Sprintf("hit%d", i)])
		if h.pc != worker || h.thread == "" || h.hash == "" {
			t.Fatalf("continue %d did not stop at the worker (%s):\n%s", i, worker, s[fmt.Sprintf("hit%d", i)])
		}
		hits = append(hits, h)
	}
	if hits[0].thread == hits[1].thread {
		t.Errorf("both workers started on vCPU %s; want one hit on each vCPU: %+v", hits[0].thread, hits)
	}
	if !strings.Contains(s["to-end"], "No more reverse-execution history") {
		t.Errorf("continue after both workers' hits did not run to the end:\n%s", s["to-end"])
	}
	for _, i := range []int{2, 1} {
		if got := parseStop(s[fmt.Sprintf("back%d", i)]); got != hits[i-1] {
			t.Errorf("reverse-continue to hit %d: %+v, the forward hit was %+v\n%s", i, got, hits[i-1], s[fmt.Sprintf("back%d", i)])
		}
	}
	if !strings.Contains(stderr, "replay reached the end of the recording and matched it") {
		t.Errorf("the replay under the debugger did not end matching the recording:\n%s", tail(stderr))
	}
}
