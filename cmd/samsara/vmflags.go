package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

// vmFlags are the machine flags shared by run and record.
type vmFlags struct {
	kernel, initrd, disk string
	cpus                 int
	mem                  string
	appendArgs           string
	console              string
	// guestEnv is the program's working directory, environment and
	// standard input (--cwd, --env, --stdin), sent to the guest's init
	// in front of argv (vmm.GuestArgv) and so kept in a recording's argv.
	guestEnv vmm.Environment
	// fromCheckpoint: the machine resumes from a checkpoint, so no kernel
	// or initrd is needed (the daemon runs record without a build/ folder).
	fromCheckpoint bool
}

func (f *vmFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel, an uncompressed ELF vmlinux (default: the reference kernel, build/vmlinux)")
	fl.StringVar(&f.initrd, "initrd", "", "initramfs (default: the reference initramfs, build/initramfs.cpio)")
	fl.StringVar(&f.disk, "vm", "", "raw disk image for a virtio block device; never written (guest writes go to an overlay)")
	fl.IntVar(&f.cpus, "cpus", 2, fmt.Sprintf("number of vCPUs (1-%d)", vmm.MaxCPUs))
	fl.StringVar(&f.mem, "mem", "256M", "guest memory, e.g. 256M or 1G")
	fl.StringVar(&f.appendArgs, "append", "", "extra kernel command-line arguments")
	fl.StringVar(&f.console, "console", "", "write the guest console to this file instead of stdout")
	fl.StringVar(&f.guestEnv.Cwd, "cwd", "", "the program's working directory in the guest (absolute, e.g. /mnt; default /)")
	fl.StringArrayVar(&f.guestEnv.Env, "env", nil, "KEY=VALUE in the program's environment (repeatable)")
	fl.StringVar(&f.guestEnv.Stdin, "stdin", "", "a guest file (e.g. /mnt/input.txt, on the --vm disk) as the program's standard input")
}

// config turns the flags into a machine config.
func (f *vmFlags) config(argv []string) (vmm.Config, func(), error) {
	mem, err := parseSize(f.mem)
	if err != nil {
		return vmm.Config{}, nil, fmt.Errorf("--mem: %w", err)
	}
	if argv, err = vmm.GuestArgv(argv, f.guestEnv); err != nil {
		return vmm.Config{}, nil, err
	}
	cfg := vmm.Config{CPUs: f.cpus, Mem: mem, Append: f.appendArgs, Argv: argv, Disk: f.disk}
	if !f.fromCheckpoint {
		if cfg.Kernel, err = defaultArtifact(f.kernel, "vmlinux", "--kernel"); err != nil {
			return cfg, nil, err
		}
		if cfg.Initrd, err = defaultArtifact(f.initrd, "initramfs.cpio", "--initrd"); err != nil {
			return cfg, nil, err
		}
	}
	if f.disk != "" {
		if _, err := os.Stat(f.disk); err != nil {
			return cfg, nil, fmt.Errorf("--vm: %w", err)
		}
	}
	closeFn := func() {}
	cfg.Console = os.Stdout
	if f.console != "" {
		out, err := os.Create(f.console)
		if err != nil {
			return cfg, nil, fmt.Errorf("--console: %w", err)
		}
		cfg.Console = out
		closeFn = func() { out.Close() }
	}
	return cfg, closeFn, nil
}

// defaultArtifact resolves an input file: the flag's value if given
// (which must exist), else the reference artifact in build/ next to the
// samsara binary's directory or in the working directory.
func defaultArtifact(flagValue, name, flagName string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("%s: %w", flagName, err)
		}
		return flagValue, nil
	}
	var candidates []string
	if env := os.Getenv("SAMSARA_BUILD"); env != "" {
		candidates = append(candidates, filepath.Join(env, name))
	}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "build", name))
	}
	candidates = append(candidates, filepath.Join("build", name))
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("no %s given and the reference %s was not found (looked in %s); run `make` first or pass %s", flagName, name, strings.Join(candidates, ", "), flagName)
}

// parseSize parses 256M, 1G, 65536K or a byte count.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (examples: 256M, 1G)", s)
	}
	return n * mult, nil
}
