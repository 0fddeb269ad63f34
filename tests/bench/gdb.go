package main

// go run ./tests/bench gdb: what going back costs under `replay --gdb`.
// It boots the reference guest on 2 vCPUs to a checkpoint (or takes
// -checkpoint PATH), records -gdb-workload from it, and drives `samsara
// replay --gdb` over the raw protocol: a forward seek to the recording's
// last chunk (the debugger checkpoints the machine on the way), then, for
// each distance, the time to go back that far in guest time (`monitor
// seek` to the chunk that many guest seconds before the end, and forward
// to the end again), a reverse-continue to the last hit of a breakpoint
// on __schedule, and the disk the debugger's checkpoints hold.

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

var gdbWorkload = flag.String("gdb-workload", "streamcluster 2 tiny", "gdb: the program to record (a few guest seconds at least)")

// gdbClient is a minimal GDB remote protocol client in no-ack mode.
type gdbClient struct {
	c net.Conn
	r *bufio.Reader
}

func (g *gdbClient) ask(p string) string {
	var sum byte
	for i := 0; i < len(p); i++ {
		sum += p[i]
	}
	fmt.Fprintf(g.c, "$%s#%02x", p, sum)
	for {
		b, err := g.r.ReadByte()
		if err != nil {
			fail(fmt.Errorf("gdb reply to %q: %w", p, err))
		}
		if b == '$' {
			break
		}
	}
	body, err := g.r.ReadString('#')
	if err != nil {
		fail(fmt.Errorf("gdb reply to %q: %w", p, err))
	}
	g.r.Discard(2)
	return strings.TrimSuffix(body, "#")
}

// monitor runs a monitor command and returns its text.
func (g *gdbClient) monitor(cmd string) string {
	out, _ := hex.DecodeString(g.ask("qRcmd," + hex.EncodeToString([]byte(cmd))))
	return string(out)
}

func benchGDB(samsara, kernel, initrd string, timeout time.Duration) {
	dir, err := os.MkdirTemp("", "bench-gdb-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	ckpt := benchCheckpoint(samsara, kernel, initrd, dir, timeout)
	rec := filepath.Join(dir, "rec.zst")
	benchRecord(samsara, ckpt, rec, *gdbWorkload, timeout)
	starts := chunkGuestStarts(rec)
	cmd, g := startDebugger(samsara, rec, ckpt, dir)
	defer cmd.Process.Kill()
	g.ask("QStartNoAckMode")
	measureGDB(g, starts)
	g.ask("D")
	cmd.Wait()
}

// chunkGuestStarts is each chunk's guest time at its start, and the
// total at the end.
func chunkGuestStarts(rec string) []time.Duration {
	f, err := os.Open(rec)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	_, records, err := log.ReadAll(f)
	if err != nil {
		fail(err)
	}
	var out []time.Duration
	var t time.Duration
	for _, r := range records {
		if c, ok := r.(*log.Chunk); ok {
			out = append(out, t)
			t += time.Duration(c.GuestMicros) * time.Microsecond
		}
	}
	return append(out, t)
}

// startDebugger starts `replay --gdb` and connects to it.
func startDebugger(samsara, rec, ckpt, dir string) (*exec.Cmd, *gdbClient) {
	cmd := exec.Command(samsara, "replay", rec, "--from-checkpoint", ckpt, "--gdb", "127.0.0.1:0", "--console", filepath.Join(dir, "console"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		fail(err)
	}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	sc := bufio.NewScanner(stderr)
	re := regexp.MustCompile(`target remote (\S+)'`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			c, err := net.Dial("tcp", m[1])
			if err != nil {
				fail(err)
			}
			return cmd, &gdbClient{c: c, r: bufio.NewReader(c)}
		}
	}
	fail(fmt.Errorf("replay --gdb printed no address"))
	return nil, nil
}

// measureGDB prints the table.
func measureGDB(g *gdbClient, starts []time.Duration) {
	last := len(starts) - 2
	total := starts[len(starts)-1]
	t0 := time.Now()
	g.monitor(fmt.Sprintf("seek %d", last))
	fmt.Printf("recording: %s, %d chunks, %.1f s of guest time\n\n", *gdbWorkload, last+1, total.Seconds())
	fmt.Printf("| going back from chunk %d | latency |\n|---|---|\n", last)
	fmt.Printf("| first forward replay to it (checkpointing) | %.2f s |\n", time.Since(t0).Seconds())
	for _, d := range []time.Duration{time.Second, 10 * time.Second} {
		target := 0
		for i, s := range starts[:last+1] {
			if s <= starts[last]-d {
				target = i
			}
		}
		if starts[last] < d {
			fmt.Printf("| seek %v back | recording too short |\n", d)
			continue
		}
		t := time.Now()
		g.monitor(fmt.Sprintf("seek %d", target))
		fmt.Printf("| seek %v back (chunk %d) | %.2f s |\n", d, target, time.Since(t).Seconds())
		g.monitor(fmt.Sprintf("seek %d", last))
	}
	g.ask("Z1," + scheduleAddr() + ",1")
	t := time.Now()
	g.ask("bc")
	d := time.Since(t)
	when := strings.SplitN(g.monitor("when"), "\n", 2)[0]
	fmt.Printf("| reverse-continue to the last __schedule hit (%s) | %.2f s |\n", when, d.Seconds())
	fmt.Printf("\n%s", g.monitor("info checkpoints"))
	fmt.Printf("checkpoint files: %s\n", debugCheckpointBytes())
}

// scheduleAddr is __schedule's address from the build's System.map.
func scheduleAddr() string {
	b, err := os.ReadFile(filepath.Join(*buildDirFlag, "System.map"))
	if err != nil {
		fail(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "__schedule" {
			return strings.TrimLeft(f[0], "0")
		}
	}
	fail(fmt.Errorf("__schedule not in System.map"))
	return ""
}

// debugCheckpointBytes sums the debugger's checkpoint files (the newest
// samsara-debug-* directory).
func debugCheckpointBytes() string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "samsara-debug-*"))
	var newest string
	var when time.Time
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.ModTime().After(when) {
			newest, when = d, st.ModTime()
		}
	}
	files, _ := filepath.Glob(filepath.Join(newest, "*.ckpt"))
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return fmt.Sprintf("%d files, %.1f MB on disk", len(files), float64(n)/1e6)
}
