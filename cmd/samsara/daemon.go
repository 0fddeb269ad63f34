package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/samsara-vmm/samsara/internal/daemon"
)

// shutdownGrace bounds a graceful shutdown: every running job gets its
// clean stop (daemon.DefaultStopGrace) and then a little for the store.
const shutdownGrace = daemon.DefaultStopGrace + 5*time.Second

func newDaemonCmd(logger func() *zap.Logger) *cobra.Command {
	var socket, store, group string
	var images []string
	var maxVCPUs int
	cmd := &cobra.Command{
		Use:   "daemon --socket PATH --store DIR [--images DIR...] [--max-vcpus N] [--group G]",
		Short: "Serve the recording API on a Unix socket (see README, api/openapi.yaml)",
		Long: `Run samsara as a service: an HTTP/JSON API under /v1 on a Unix socket to
create, list, watch, stop, inspect, download and replay recordings. Each job
runs as a child samsara process; jobs run while their vCPUs fit in
--max-vcpus and queue in order otherwise. SIGTERM or SIGINT stops the
running jobs cleanly (their logs keep the recorded prefix) and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if socket == "" || store == "" {
				return fmt.Errorf("--socket and --store are required")
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the samsara binary for the jobs: %w", err)
			}
			gid := -1
			if group != "" {
				if gid, err = lookupGroup(group); err != nil {
					return err
				}
			}
			// The daemon's job events go to stderr (the journal under
			// systemd) at info level, as JSON; -v adds the debug log.
			log := logger()
			if verbose, _ := cmd.Flags().GetBool("verbose"); !verbose {
				if log, err = zap.NewProduction(); err != nil {
					return err
				}
			}
			d, err := daemon.New(daemon.Config{Store: store, Images: images, MaxVCPUs: maxVCPUs, Version: version, Logger: log,
				Engine: &daemon.ExecEngine{Binary: exe}})
			if err != nil {
				return err
			}
			l, err := daemon.Listen(socket, gid)
			if err != nil {
				return err
			}
			defer os.Remove(socket)
			srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second} // 10 s: a local client sends its headers at once; this only frees stuck connections
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(l) }()
			fmt.Fprintf(os.Stderr, "samsara: daemon listening on %s (store %s, %d vCPUs)\n", socket, store, maxVCPUs)
			select {
			case err := <-errc:
				return err
			case sig := <-sigs:
				fmt.Fprintf(os.Stderr, "samsara: %v: stopping the running jobs\n", sig)
			}
			// Jobs first (the API keeps answering while they stop), then
			// the server.
			serr := d.Shutdown(shutdownGrace)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // 5 s: in-flight requests are local and short; a followed console ends with its job
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return serr
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&socket, "socket", "", "Unix socket to serve the API on (created 0600)")
	fl.StringVar(&store, "store", "", "folder of the recordings")
	fl.StringArrayVar(&images, "images", nil, "folder that machine files (kernel, initrd, disk, checkpoint) must lie in; repeatable")
	fl.IntVar(&maxVCPUs, "max-vcpus", runtime.NumCPU(), "vCPUs the running jobs may hold together; the rest queue")
	fl.StringVar(&group, "group", "", "group that owns the socket (then mode 0660)")
	return cmd
}

// lookupGroup resolves a group name or number.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("--group: %w", err)
	}
	return strconv.Atoi(gr.Gid)
}
