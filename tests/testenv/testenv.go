// Package testenv is where tests learn where the reference guest was
// built: the one environment read of samsara's tests outside tests/ (the
// internal packages read no environment: internal/layout's rule).
package testenv

import "os"

// BuildDir is the reference guest's build folder (vmlinux, System.map,
// initramfs.cpio, workloads) that make test passes as SAMSARA_BUILD; ""
// when it is not set.
func BuildDir() string { return os.Getenv("SAMSARA_BUILD") }
