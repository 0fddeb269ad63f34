package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// notesMu serializes appends from one test binary's tests.
var notesMu sync.Mutex

// Note logs a finding that does not fail the test (a known intermittent
// failure that passed on its retry) and appends it to the file that make
// test names in SAMSARA_TEST_NOTES and prints at its end, so that a CI
// log shows it although go test prints nothing of a passing package.
func Note(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log(msg)
	path := os.Getenv("SAMSARA_TEST_NOTES")
	if path == "" {
		return
	}
	notesMu.Lock()
	defer notesMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("test notes: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "--- %s:\n%s\n", t.Name(), msg)
}
