package main

// The progress line record and replay show on a terminal: chunks done,
// guest time and wall time, redrawn in place once a second. It is shown
// only when stderr is a terminal and CI is not set, so logs, pipes and CI
// stay quiet. Guest console output goes to the same terminal: the console
// writer erases the progress line before each write, and the line comes
// back at the next redraw.

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/samsara-vmm/samsara/internal/session"
)

// progressEvery is the redraw period: often enough to see a replay move,
// rarely enough to cost nothing.
const progressEvery = time.Second

// progressLine draws one status line on stderr.
type progressLine struct {
	// what names the operation ("record", "replay").
	what string
	// total is the number of chunks to replay (0 when recording).
	total int
	// out is where the line is drawn (stderr).
	out io.Writer

	mu sync.Mutex
	// shown: the line is on the screen and must be erased before output.
	shown bool
	// quit stops the redraw goroutine.
	quit chan struct{}
	// done is closed when the redraw goroutine has exited.
	done chan struct{}
}

// newProgress returns a progress line, or nil when stderr is not a
// terminal or CI is set.
func newProgress(what string, total int) *progressLine {
	if os.Getenv("CI") != "" {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &progressLine{what: what, total: total, out: os.Stderr, quit: make(chan struct{}), done: make(chan struct{})}
}

// console wraps the guest console writer so that its output erases the
// line first. A nil progressLine returns w unchanged.
func (p *progressLine) console(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return consoleWriter{p: p, w: w}
}

type consoleWriter struct {
	p *progressLine
	w io.Writer
}

func (c consoleWriter) Write(b []byte) (int, error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.p.eraseLocked()
	return c.w.Write(b)
}

// eraseLocked clears the line (carriage return, erase to end of line).
// Preconditions: p.mu must be held.
func (p *progressLine) eraseLocked() {
	if p.shown {
		fmt.Fprint(p.out, "\r\033[K")
		p.shown = false
	}
}

// start redraws the line from m's progress until stop is called.
func (p *progressLine) start(m *session.Session) {
	if p == nil {
		return
	}
	began := time.Now()
	go tickUntil(progressEvery, p.quit, p.done, func() { p.draw(m.Progress(), time.Since(began)) })
}

// tickUntil calls f every period until quit is closed, then closes done
// (the progress line's and the status stream's redraw loop).
func tickUntil(every time.Duration, quit, done chan struct{}, f func()) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
			f()
		}
	}
}

// draw prints the line for one progress report.
func (p *progressLine) draw(pr session.Progress, wall time.Duration) {
	chunks := fmt.Sprintf("%d chunks", pr.Chunks)
	if p.total > 0 {
		chunks = fmt.Sprintf("chunk %d/%d (%d%%)", pr.Chunks, p.total, 100*pr.Chunks/int64(p.total))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "\r\033[Ksamsara %s: %s, guest %.3f s, wall %.0f s", p.what, chunks, float64(pr.GuestNanos)/1e9, wall.Seconds())
	p.shown = true
}

// stop ends the redraws and erases the line.
func (p *progressLine) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	<-p.done
	p.mu.Lock()
	p.eraseLocked()
	p.mu.Unlock()
}
