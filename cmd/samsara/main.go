// Command samsara records and replays whole multiprocessor virtual machines
// on KVM. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	err := newRootCmd().Execute()
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.status)
	default:
		fmt.Fprintln(os.Stderr, "samsara:", err)
		os.Exit(2)
	}
}

// exitError carries a guest's exit status out as the process's status.
type exitError struct{ status int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.status) }
