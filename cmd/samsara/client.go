package main

// The client side of the daemon: `samsara ps`, `samsara stop`, and
// --daemon on record, replay and inspect. Exit codes are the one-shot
// CLI's: the guest's exit status for record, 2 on an error or a divergence.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// defaultSocket is where the daemon listens unless told otherwise: the
// systemd unit in README.md puts it there.
const defaultSocket = "/run/samsara/samsara.sock"

// socketDefault is $SAMSARA_DAEMON or defaultSocket.
func socketDefault() string {
	if s := os.Getenv("SAMSARA_DAEMON"); s != "" {
		return s
	}
	return defaultSocket
}

// addDaemonFlag registers --daemon on a one-shot command.
func addDaemonFlag(cmd *cobra.Command, sock *string) {
	cmd.Flags().StringVar(sock, "daemon", "", "send the job to the samsara daemon on this socket instead of running it here")
}

// daemonPoll is how often the client polls a job it waits for: a person
// does not notice a quarter second, and the daemon answers in well under
// a millisecond (see go run ./tests/bench daemon).
const daemonPoll = 250 * time.Millisecond

// absPath makes a machine file absolute (the daemon wants absolute paths).
func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

// daemonMachine is the machine a --daemon record asks for: the same
// flags as a local record, with every file as an absolute path (the
// daemon resolves nothing against the client's folder).
func daemonMachine(f *vmFlags, fromCkpt, mode string, argv []string) (daemon.Machine, error) {
	argv, err := vmm.GuestArgv(argv, f.guestEnv)
	if err != nil {
		return daemon.Machine{}, err
	}
	m := daemon.Machine{CPUs: f.cpus, Memory: f.mem, Mode: mode, Append: f.appendArgs, Argv: argv}
	if fromCkpt != "" {
		m.Checkpoint, err = absPath(fromCkpt)
	} else {
		m.Kernel, m.Initrd, err = daemonBootFiles(f)
	}
	if err != nil {
		return m, err
	}
	m.Disk, err = absPath(f.disk)
	return m, err
}

// daemonBootFiles are the kernel and initrd of a cold boot, absolute.
func daemonBootFiles(f *vmFlags) (kernel, initrd string, err error) {
	if kernel, err = defaultArtifact(f.kernel, "vmlinux", "--kernel"); err != nil {
		return
	}
	if initrd, err = defaultArtifact(f.initrd, "initramfs.cpio", "--initrd"); err != nil {
		return
	}
	if kernel, err = absPath(kernel); err != nil {
		return
	}
	initrd, err = absPath(initrd)
	return
}

// parseLabels turns --label key=value flags into a map (nil for none).
func parseLabels(labels []string) (map[string]string, error) {
	var m map[string]string
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("--label %q: want key=value", l)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m, nil
}

// recordViaDaemon is `samsara record --daemon`: create the recording,
// stream its console, wait for its end, download the log to -o if given.
func recordViaDaemon(cmd *cobra.Command, sock string, f *vmFlags, fromCkpt, mode, out string, argv []string) error {
	m, err := daemonMachine(f, fromCkpt, mode, argv)
	if err != nil {
		return err
	}
	name, _ := cmd.Flags().GetString("name")
	labels, _ := cmd.Flags().GetStringArray("label")
	detach, _ := cmd.Flags().GetBool("detach")
	req := daemon.CreateRecording{Name: name, Machine: m}
	if req.Labels, err = parseLabels(labels); err != nil {
		return err
	}
	c := daemon.NewClient(sock)
	r, err := c.Create(req)
	if err != nil {
		return err
	}
	if detach {
		fmt.Println(r.ID)
		return nil
	}
	fmt.Fprintf(os.Stderr, "samsara: recording %s (%s)\n", r.ID, r.State)
	console := os.Stdout
	if f.console != "" {
		if console, err = os.Create(f.console); err != nil {
			return fmt.Errorf("--console: %w", err)
		}
		defer console.Close()
	}
	if err := c.Stream("/v1/recordings/"+r.ID+"/console?follow=true", console); err != nil {
		return err
	}
	for !terminal(r.State) {
		time.Sleep(daemonPoll)
		if r, err = c.Get(r.ID); err != nil {
			return err
		}
	}
	if out != "" {
		file, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("-o: %w", err)
		}
		defer file.Close()
		if err := c.Stream("/v1/recordings/"+r.ID+"/log", file); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "samsara: recording %s %s: %d chunks, %d log bytes\n", r.ID, r.State, r.Progress.Chunks, r.Progress.LogBytes)
	switch r.State {
	case daemon.StateFinished:
		if *r.ExitStatus != 0 {
			return &exitError{status: *r.ExitStatus}
		}
		return nil
	case daemon.StateStopped:
		return &exitError{status: 128 + 15} // as a one-shot record stopped by SIGTERM
	}
	return fmt.Errorf("recording %s %s: %s", r.ID, r.State, r.Error)
}

// terminal reports whether a recording or replay state is final.
func terminal(s daemon.State) bool {
	switch s {
	case daemon.StateQueued, daemon.StateBooting, daemon.StateRecording, daemon.StateRunning:
		return false
	}
	return true
}

// replayViaDaemon is `samsara replay --daemon S ID`.
func replayViaDaemon(sock, id string) error {
	c := daemon.NewClient(sock)
	rp, err := c.Replay(id)
	if err != nil {
		return err
	}
	for !terminal(rp.State) {
		time.Sleep(daemonPoll)
		if rp, err = c.GetReplay(id, rp.ID); err != nil {
			return err
		}
	}
	switch rp.State {
	case daemon.StateMatched:
		fmt.Fprintf(os.Stderr, "samsara: replay %s matched recording %s (%d chunks)\n", rp.ID, id, rp.Progress.Chunks)
		return nil
	case daemon.StateMatchedPrefix:
		fmt.Fprintf(os.Stderr, "samsara: replay %s matched the recorded prefix of %s (%d chunks; the recording has no end: it was stopped or cut short)\n", rp.ID, id, rp.Progress.Chunks)
		return nil
	case daemon.StateDiverged:
		return fmt.Errorf("DIVERGED: %s", rp.Divergence.Message)
	}
	return fmt.Errorf("replay %s %s: %s", rp.ID, rp.State, rp.Error)
}

// inspectViaDaemon is `samsara inspect --daemon S ID [--json]`.
func inspectViaDaemon(sock, id string, asJSON bool) error {
	r, err := daemon.NewClient(sock).Get(id)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(r)
	}
	fmt.Printf("id:          %s %s, state %s\n", r.ID, r.Name, r.State)
	if r.Summary == nil {
		return fmt.Errorf("recording %s has no readable log yet (%s)", id, r.State)
	}
	printSummary(os.Stdout, r.Summary)
	if !r.Summary.Complete {
		return fmt.Errorf("recording %s is cut short (summary above is of its intact prefix)", id)
	}
	return nil
}

func newPsCmd() *cobra.Command {
	var sock, state string
	var labels []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps [--daemon SOCKET] [--state S] [--label k=v]... [--json]",
		Short: "List the daemon's recordings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := daemon.NewClient(sock).List(daemon.State(state), labels...)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(rs)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATE\tCPUS\tCHUNKS\tGUEST\tLOG\tREPLAYS\tCREATED")
			for _, r := range rs {
				var reps []string
				for _, rp := range r.Replays {
					reps = append(reps, string(rp.State))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.3fs\t%d\t%s\t%s\n", r.ID, r.Name, r.State, r.Machine.CPUs, r.Progress.Chunks,
					float64(r.Progress.GuestNanos)/1e9, r.Progress.LogBytes, strings.Join(reps, ","), r.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sock, "daemon", socketDefault(), "the daemon's socket ($SAMSARA_DAEMON)")
	cmd.Flags().StringVar(&state, "state", "", "only recordings in this state")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "only recordings with this label (key=value); repeatable")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func newStopCmd() *cobra.Command {
	var sock string
	cmd := &cobra.Command{
		Use:   "stop [--daemon SOCKET] ID...",
		Short: "Stop recordings of the daemon; their logs keep the recorded prefix",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := daemon.NewClient(sock)
			var errs []error
			for _, id := range args {
				if _, err := c.Stop(id); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Println(id)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&sock, "daemon", socketDefault(), "the daemon's socket ($SAMSARA_DAEMON)")
	return cmd
}

// addDaemonRecordFlags registers the flags record takes only with --daemon.
func addDaemonRecordFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.String("name", "", "with --daemon: a name for the recording")
	fl.StringArray("label", nil, "with --daemon: a key=value label; repeatable")
	fl.BoolP("detach", "d", false, "with --daemon: print the recording's id and return at once")
}
