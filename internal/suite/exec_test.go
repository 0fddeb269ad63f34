package suite

import (
	"fmt"
	"strings"
	"testing"
)

// A timed-out job's failure quotes where samsara was stuck (the goroutine
// dump after SIGQUIT), not the signalled thread's registers at its end.
func TestQuitDumpQuotesGoroutines(t *testing.T) {
	var b strings.Builder
	b.WriteString("samsara: recording\nSIGQUIT: quit\nPC=0x491da1 m=0 sigcode=0\n\ngoroutine 7 [chan receive]:\nsession.(*Session).turn(...)\n")
	for i := 0; i < 2*dumpLines; i++ {
		fmt.Fprintf(&b, "r%d 0x0\n", i)
	}
	got := quitDump(b.String())
	for _, want := range []string{"samsara: recording", "goroutine 7 [chan receive]", "session.(*Session).turn", "more lines]"} {
		if !strings.Contains(got, want) {
			t.Errorf("quitDump lacks %q:\n%s", want, got[:200])
		}
	}
	if n := strings.Count(got, "\n"); n > dumpLines+tailLines+2 {
		t.Errorf("quitDump quoted %d lines, want at most %d", n, dumpLines+tailLines+2)
	}
	if got := quitDump("a\nb\n"); got != "a\nb" {
		t.Errorf("without a dump: %q, want the last lines", got)
	}
}
