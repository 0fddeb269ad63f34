package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/session"
)

// The guest console and the progress line share a terminal: console output
// must erase the line first, and the line must say how far replay is.
func TestProgressLineYieldsToConsole(t *testing.T) {
	var term bytes.Buffer
	p := &progressLine{what: "replay", total: 200, out: &term}
	console := p.console(&term)
	p.draw(session.Progress{Chunks: 50, GuestNanos: 1500000000}, 3*time.Second)
	if got := term.String(); !strings.Contains(got, "chunk 50/200 (25%), guest 1.500 s, wall 3 s") {
		t.Fatalf("progress line = %q", got)
	}
	term.Reset()
	console.Write([]byte("hello\n"))
	if got := term.String(); got != "\r\033[Khello\n" {
		t.Fatalf("console output after the progress line = %q, want the line erased first", got)
	}
	term.Reset()
	console.Write([]byte("again\n"))
	if got := term.String(); got != "again\n" {
		t.Fatalf("console output with no line shown = %q", got)
	}
}

func TestProgressQuietWhenNotATerminal(t *testing.T) {
	t.Setenv("CI", "true")
	if p := newProgress("record", 0); p != nil {
		t.Fatal("progress line shown under CI")
	}
	var w bytes.Buffer
	var p *progressLine
	if p.console(&w) != &w {
		t.Fatal("a nil progress line must leave the console writer as is")
	}
	p.start(nil)
	p.stop()
}
