package main

import (
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/session"
)

// TestTraceWindow: --chunks, --from and --to give the expander's window;
// --from/--to narrow --chunks, and bad or empty windows are errors that
// name the flag.
func TestTraceWindow(t *testing.T) {
	type win struct {
		fromChunk, toChunk int
		fromIndex, until   uint64
	}
	for _, c := range []struct {
		chunks, from, to string
		want             win
		err              string
	}{
		{want: win{0, -1, 0, 0}},
		{chunks: "0-9", want: win{0, 9, 0, 0}},
		{from: "3.100", to: "6.50", want: win{3, 6, 100, 51}},
		{from: "3", to: "6", want: win{3, 6, 0, 0}},
		{chunks: "0-9", from: "3.100", want: win{3, 9, 100, 0}},
		{chunks: "4-9", from: "3.100", to: "12.5", want: win{4, 9, 0, 0}},
		{chunks: "0-9", to: "4.0", want: win{0, 4, 0, 1}},
		{from: "5.10", to: "5.10", want: win{5, 5, 10, 11}},
		{from: "5.10", to: "5.9", err: "window is empty"},
		{from: "6", to: "5", err: "window is empty"},
		{from: "x", err: `--from "x"`},
		{to: "3.-1", err: `--to "3.-1"`},
		{from: "-2.0", err: `--from "-2.0"`},
	} {
		tf := &traceFlags{chunks: c.chunks, from: c.from, to: c.to}
		e := &session.Expander{}
		err := tf.window(e)
		got := win{e.FromChunk, e.ToChunk, e.FromIndex, e.Until}
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("--chunks %q --from %q --to %q: error %v, want one with %q", c.chunks, c.from, c.to, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("--chunks %q --from %q --to %q: %v", c.chunks, c.from, c.to, err)
		case c.err == "" && got != c.want:
			t.Errorf("--chunks %q --from %q --to %q: window %+v, want %+v", c.chunks, c.from, c.to, got, c.want)
		}
	}
}
