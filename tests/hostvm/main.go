// Command hostvm runs samsara's KVM work inside an emulated AMD-SVM host:
// QEMU's TCG (-cpu max, SVM with nested paging, no PMU) booting Debian's
// cloud kernel with kvm-amd loaded. It gives a real /dev/kvm on machines
// that have none (cloud VMs and CI runners without nested virtualization),
// and it is the only place on the project's machines where samsara's
// hardware-virtualization path runs (../shared/PLATFORM.md).
//
//	hostvm run  [flags] -- COMMAND...  run a shell command inside the host,
//	                                   with samsara on PATH and the
//	                                   reference guest in $SAMSARA_BUILD
//	hostvm test [flags]                run the KVM tests of every package
//	                                   inside the host (-set smoke|full)
//	hostvm bench [flags]               host boot time and checkpoint resume
//	hostvm packages                    the packages whose tests need KVM
//
// Run it from the repository root (make does). It needs the packages
// qemu-system-x86, busybox-static, cpio (guest-images/deps.txt) and apt's
// package lists for the cloud kernel, which it downloads once into
// $SAMSARA_CACHE/hostvm. Its exit status is the inner command's, or 125
// when the host itself failed (did not boot, no /dev/kvm, timed out).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// modulePath is the project's Go module.
const modulePath = "github.com/samsara-vmm/samsara"

// exitHostFailed is the status when the host VM, not the command inside,
// failed (as docker run uses 125 for its own errors).
const exitHostFailed = 125

// options are the flags every subcommand takes.
type options struct {
	timeout time.Duration
	memMiB  int
	cpus    int
	build   string
	cache   string
	keep    string
}

func (o *options) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.DurationVar(&o.timeout, "timeout", timeout, "bound on the whole host VM run, boot included")
	// 6 GiB: the initramfs (~0.3 GiB with the test binaries) unpacked in
	// RAM, a tmpfs for checkpoints and recordings, and a few 256 MiB
	// guests; the machines here have 24 GiB.
	fs.IntVar(&o.memMiB, "mem", 6144, "host VM memory in MiB")
	fs.IntVar(&o.cpus, "cpus", 2, "host VM CPUs")
	fs.StringVar(&o.build, "build", envOr("SAMSARA_BUILD", "build"), "the reference guest (make all)")
	fs.StringVar(&o.cache, "cache", envOr("SAMSARA_CACHE", filepath.Join(os.Getenv("HOME"), ".cache", "samsara")), "cache folder (the host kernel goes in hostvm/)")
	fs.StringVar(&o.keep, "keep", "", "keep the host's initramfs at this path (for debugging)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	status := 0
	switch os.Args[1] {
	case "run":
		status, err = cmdRun(os.Args[2:])
	case "test":
		status, err = cmdTest(os.Args[2:])
	case "bench":
		status, err = cmdBench(os.Args[2:])
	case "failures":
		status, err = cmdFailures(os.Args[2:])
	case "packages":
		// The import paths of the packages whose tests need KVM, one a
		// line, for make to run the others on this machine.
		for _, p := range kvmPackages {
			fmt.Println(modulePath + "/" + p.Path)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostvm:", err)
		os.Exit(exitHostFailed)
	}
	os.Exit(status)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hostvm run [flags] -- COMMAND... | hostvm test [-set smoke|full] [flags] | hostvm bench [flags] | hostvm failures GO-TEST-OUTPUT")
	os.Exit(2)
}

// cmdRun runs one shell command inside the host.
func cmdRun(args []string) (int, error) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var o options
	o.register(fs, 30*time.Minute)
	fs.Parse(args)
	if fs.NArg() == 0 {
		return 0, errors.New("run: no command (hostvm run -- COMMAND...)")
	}
	w, p, err := prepare(o)
	if err != nil {
		return 0, err
	}
	defer w.close()
	p.Script = strings.Join(fs.Args(), " ") + "\n"
	res, err := w.boot(p, os.Stdout)
	return res.Status, err
}

// prepare makes the workspace of one host VM run and its base payload;
// the caller closes the workspace.
func prepare(o options) (*workspace, payload, error) {
	w, err := newWorkspace(o)
	if err != nil {
		return nil, payload{}, err
	}
	p, err := w.basePayload()
	if err != nil {
		w.close()
		return nil, payload{}, err
	}
	return w, p, nil
}

// workspace is a temporary folder for one host VM run.
type workspace struct {
	o      options
	dir    string
	kernel hostKernel
	// silence is the console-silence bound of boot (0: none).
	silence time.Duration
	// stuck is boot's bound on test progress (0: none).
	stuck time.Duration
}

func newWorkspace(o options) (*workspace, error) {
	if _, err := os.Stat("go.mod"); err != nil {
		return nil, errors.New("run hostvm from the repository root (make does)")
	}
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the host VM needs an x86-64 machine, not %s", runtime.GOARCH)
	}
	for _, need := range []string{qemuBinary, "cpio"} {
		if _, err := exec.LookPath(need); err != nil {
			return nil, fmt.Errorf("%s not found (make deps installs it): %w", need, err)
		}
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		return nil, fmt.Errorf("%s not found (package busybox-static; make deps installs it)", busyboxPath)
	}
	k, err := ensureHostKernel(o.cache, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		return nil, err
	}
	// Under the cache, not /tmp: the test binaries and guest artifacts
	// are a few hundred MiB and /tmp may be a small tmpfs.
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.cache, "hostvm-run-")
	if err != nil {
		return nil, err
	}
	return &workspace{o: o, dir: dir, kernel: k}, nil
}

func (w *workspace) close() { os.RemoveAll(w.dir) }

// goBuild runs go build (or go test -c) for the host: CGO_ENABLED=0, since
// the host has no C library.
func (w *workspace) goBuild(args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// basePayload is samsara, the reference guest, and the tools and sources
// the tests call (guest-images/build-disk.sh needs bash and mke2fs).
func (w *workspace) basePayload() (payload, error) {
	bin := filepath.Join(w.dir, "samsara")
	if err := w.goBuild("build", "-o", bin, "./cmd/samsara"); err != nil {
		return payload{}, err
	}
	p := payload{
		Files: map[string]string{"hostvm/bin/samsara": bin},
		Env: map[string]string{
			"PATH":          "/hostvm/bin:/bin",
			"HOME":          "/tmp",
			"SAMSARA_BUILD": "/hostvm/build",
			"SAMSARA_BIN":   "/hostvm/bin/samsara",
			"SAMSARA_CACHE": "/tmp/cache",
			// Tell samsara and the tests where they run.
			"SAMSARA_HOSTVM": "1",
		},
	}
	// CI, and the corpus's knobs (re-measuring known failures, a subset:
	// tests/corpus_test.go), reach the tests inside as they would outside.
	for _, k := range []string{"CI", "SAMSARA_CORPUS_KNOWN", "SAMSARA_CORPUS_ONLY"} {
		if v := os.Getenv(k); v != "" {
			p.Env[k] = v
		}
	}
	for _, f := range []string{"vmlinux", "System.map", "task-offsets", "initramfs.cpio", "workloads"} {
		src := filepath.Join(w.o.build, f)
		if _, err := os.Stat(src); err != nil {
			return payload{}, fmt.Errorf("reference guest: %w (make all builds it)", err)
		}
		p.Files["hostvm/build/"+f] = src
	}
	p.Files["hostvm/src/guest-images/build-disk.sh"] = "guest-images/build-disk.sh"
	for _, prog := range []string{"bash", "mke2fs"} {
		if err := addDynamic(p.Files, prog); err != nil {
			return payload{}, err
		}
	}
	return p, nil
}

// addDynamic adds a dynamically linked program from this machine and the
// shared libraries ldd names, at the same paths.
func addDynamic(files map[string]string, prog string) error {
	path, err := exec.LookPath(prog)
	if err != nil {
		for _, d := range []string{"/sbin", "/usr/sbin"} {
			if _, e := os.Stat(filepath.Join(d, prog)); e == nil {
				path, err = filepath.Join(d, prog), nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s not found: %w", prog, err)
	}
	files["hostvm/bin/"+prog] = path
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", path, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					return err
				}
				files[strings.TrimPrefix(f, "/")] = real
			}
		}
	}
	return nil
}

// addGDB adds Debian's gdb (TestGDB's client, issue 15) at /usr/bin/gdb,
// with its shared libraries, its data folder (gdb's own Python modules)
// and the Python standard library it embeds: without the latter gdb
// stops at start ("No module named 'encodings'", measured with an empty
// PYTHONHOME). About 70 MB, so only the full set takes it.
func addGDB(files map[string]string) error {
	if err := addDynamic(files, "gdb"); err != nil {
		return fmt.Errorf("%w (make deps installs gdb)", err)
	}
	files["usr/bin/gdb"] = files["hostvm/bin/gdb"]
	files["usr/share/gdb"] = "/usr/share/gdb"
	py := ""
	for k := range files {
		if m := libpython.FindStringSubmatch(k); m != nil {
			py = "python" + m[1]
		}
	}
	if py == "" {
		return fmt.Errorf("gdb: no libpython among its libraries")
	}
	files["usr/lib/"+py] = "/usr/lib/" + py
	return nil
}

// libpython is the Python library gdb links (its standard library folder
// has the same name).
var libpython = regexp.MustCompile(`/libpython(3\.\d+)\.so`)

// boot builds the initramfs for p and runs the host VM.
func (w *workspace) boot(p payload, console io.Writer) (bootResult, error) {
	img := filepath.Join(w.dir, "host.cpio")
	if w.o.keep != "" {
		img = w.o.keep
	}
	if err := buildInitramfs(img, w.kernel, p); err != nil {
		return bootResult{}, err
	}
	return boot(bootConfig{
		Kernel: w.kernel, Initramfs: img,
		MemMiB: w.o.memMiB, CPUs: w.o.cpus, Timeout: w.o.timeout,
		Silence: w.silence, Stuck: w.stuck, Console: console,
	})
}
