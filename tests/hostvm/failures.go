package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// cmdFailures prints, from a saved `go test` output (not -v), what each
// failed test said: every message's first line and its last lines. make
// test runs it after the KVM tests on this machine, so that the end of
// its output (which CI keeps) says why a test failed even when the
// test's own log (a whole gdb session, say) is long.
func cmdFailures(args []string) (int, error) {
	if len(args) != 1 {
		return 2, fmt.Errorf("usage: hostvm failures GO-TEST-OUTPUT")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return 0, err
	}
	defer f.Close()
	printFailures(os.Stdout, failedMessages(f))
	return 0, nil
}

var failLine = regexp.MustCompile(`^\s*--- FAIL: (\S+)`)

// failure is one failed test (or subtest) and its messages, each cut to
// its first line and last lines (maxReasonLines in all).
type failure struct {
	test     string
	messages [][]string
}

// failedMessages reads go test's non-verbose output: a failed test's
// "--- FAIL: T" line is followed by its log entries ("    f_test.go:N:
// message", continuation lines indented further), a subtest's by more
// indentation, and a package's panic by "panic:" and a stack.
func failedMessages(in io.Reader) []failure {
	var out []failure
	var cur *failure
	indent := 0 // the indentation of cur's entries
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if m := failLine.FindStringSubmatch(line); m != nil {
			out = append(out, failure{test: m[1]})
			cur = &out[len(out)-1]
			indent = len(line) - len(strings.TrimLeft(line, " ")) + 4
			continue
		}
		if strings.HasPrefix(line, "panic: ") {
			out = append(out, failure{test: "panic", messages: [][]string{{line}}})
			cur, indent = &out[len(out)-1], -1
			continue
		}
		if cur == nil {
			continue
		}
		lead := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case indent < 0: // a panic's stack: its first goroutine's frames
			if line == "" || len(cur.messages[0]) >= maxReasonLines {
				cur = nil
			} else {
				cur.messages[0] = append(cur.messages[0], strings.TrimSpace(line))
			}
		case lead == indent && logLine.MatchString(line):
			cur.messages = append(cur.messages, []string{strings.TrimSpace(line)})
		case lead > indent && len(cur.messages) > 0:
			last := len(cur.messages) - 1
			cur.messages[last] = appendReason(cur.messages[last], line)
		case lead < indent:
			cur = nil
		}
	}
	return out
}

func printFailures(w io.Writer, fs []failure) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintln(w, "== what the failed tests said (each message's first line and its last lines) ==")
	for _, f := range fs {
		fmt.Fprintf(w, "FAILED: %s\n", f.test)
		for _, m := range f.messages {
			fmt.Fprintf(w, "    %s\n", strings.Join(m, "\n      "))
		}
	}
}
