package main

import (
	"errors"
	"flag"
	"time"
)

// cmdBench times the host VM's boot and a checkpoint resume inside it.
func cmdBench(args []string) (int, error) {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	var o options
	o.register(fs, 20*time.Minute)
	fs.Parse(args)
	return 0, errors.New("bench: not yet")
}
