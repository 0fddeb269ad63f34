package gdbstub

import (
	"fmt"
	"net"
	"strings"
)

// Listen opens the server's socket: a Unix socket when addr contains a
// '/', else TCP "HOST:PORT". A replay exposes all guest memory to whoever
// connects and the protocol has no authentication, so a TCP address must
// be loopback (127.0.0.0/8, ::1, localhost) unless allowRemote says the
// user asked for another one explicitly.
func Listen(addr string, allowRemote bool) (net.Listener, error) {
	if strings.Contains(addr, "/") {
		l, err := net.Listen("unix", addr)
		if err != nil {
			return nil, fmt.Errorf("gdb server: %w", err)
		}
		return l, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gdb server address %q (want HOST:PORT or a socket path): %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("gdb server address %q is not loopback: anyone who can reach it reads all guest memory (pass --gdb-allow-remote to listen there anyway)", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gdb server: %w", err)
	}
	return l, nil
}

// isLoopback reports whether host names the loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
