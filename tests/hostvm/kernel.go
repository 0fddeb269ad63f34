package main

// The host VM's kernel: Debian's cloud kernel (package
// linux-image-cloud-amd64, 6.1), taken apart with dpkg-deb and cached
// outside the tree under the exact package name and version, so an update
// of the package brings a new cache entry and an unchanged one costs
// nothing. Only four files are kept: vmlinuz and the three modules that
// make /dev/kvm (irqbypass, kvm, kvm-amd). The cloud kernel is used because
// it is small, boots in a few seconds under TCG and builds KVM as modules
// (../shared/PLATFORM.md, "2026-12-04").

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// metaPackage is the Debian package that names the current cloud kernel.
const metaPackage = "linux-image-cloud-amd64"

// hostModules are loaded in this order by the host's init: kvm needs
// irqbypass, kvm-amd needs kvm.
var hostModules = []string{"irqbypass.ko", "kvm.ko", "kvm-amd.ko"}

// hostKernel is one cached cloud kernel.
type hostKernel struct {
	// Dir holds vmlinuz and the modules.
	Dir string
	// Package is the kernel package name and version, e.g.
	// "linux-image-6.1.0-57-cloud-amd64_6.1.192-3".
	Package string
}

func (k hostKernel) vmlinuz() string { return filepath.Join(k.Dir, "vmlinuz") }

// complete reports whether every file of a cache entry is present.
func complete(dir string) bool {
	for _, f := range append([]string{"vmlinuz"}, hostModules...) {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// ensureHostKernel returns the cached cloud kernel, downloading and
// unpacking it first if the current package version is not cached. When
// apt's package lists cannot name a version (no `apt-get update` yet, no
// network), the newest complete cache entry is used if there is one.
func ensureHostKernel(cacheRoot string, logf func(string, ...any)) (hostKernel, error) {
	root := filepath.Join(cacheRoot, "hostvm")
	pkg, ver, err := aptCandidate()
	if err != nil {
		if k, ok := newestCached(root); ok {
			logf("hostvm: %v; using the cached %s", err, k.Package)
			return k, nil
		}
		return hostKernel{}, fmt.Errorf("find the cloud kernel package (is `apt-get update` done?): %w", err)
	}
	k := hostKernel{Dir: filepath.Join(root, pkg+"_"+ver), Package: pkg + "_" + ver}
	if complete(k.Dir) {
		return k, nil
	}
	logf("hostvm: downloading %s %s (cached in %s)", pkg, ver, root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return hostKernel{}, err
	}
	tmp, err := os.MkdirTemp(root, "download-")
	if err != nil {
		return hostKernel{}, err
	}
	defer os.RemoveAll(tmp)
	if out, err := run(tmp, "apt-get", "download", pkg+"="+ver); err != nil {
		return hostKernel{}, fmt.Errorf("apt-get download %s=%s: %w\n%s", pkg, ver, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return hostKernel{}, fmt.Errorf("apt-get download %s: expected one .deb in %s, found %d", pkg, tmp, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if out, err := run(tmp, "dpkg-deb", "-x", debs[0], x); err != nil {
		return hostKernel{}, fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	stage := filepath.Join(tmp, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return hostKernel{}, err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return hostKernel{}, fmt.Errorf("%s: expected one boot/vmlinuz-*, found %d", debs[0], len(vmlinuz))
	}
	if err := copyFile(vmlinuz[0], filepath.Join(stage, "vmlinuz")); err != nil {
		return hostKernel{}, err
	}
	for _, m := range hostModules {
		found, err := findModule(x, m)
		if err != nil {
			return hostKernel{}, fmt.Errorf("%s: %w", debs[0], err)
		}
		if err := copyModule(found, filepath.Join(stage, m)); err != nil {
			return hostKernel{}, err
		}
	}
	os.RemoveAll(k.Dir) // an incomplete entry from an interrupted run
	if err := os.Rename(stage, k.Dir); err != nil {
		return hostKernel{}, err
	}
	return k, nil
}

// aptCandidate names the kernel package the meta-package depends on and
// its candidate version, from apt's local package lists (no network).
func aptCandidate() (pkg, ver string, err error) {
	out, err := run("", "apt-cache", "depends", metaPackage)
	if err != nil {
		return "", "", fmt.Errorf("apt-cache depends %s: %w", metaPackage, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if p, ok := strings.CutPrefix(line, "Depends: "); ok && strings.HasPrefix(p, "linux-image-") {
			pkg = p
			break
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("apt-cache depends %s names no linux-image package", metaPackage)
	}
	out, err = run("", "apt-cache", "policy", pkg)
	if err != nil {
		return "", "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate: "); ok && v != "(none)" {
			return pkg, v, nil
		}
	}
	return "", "", fmt.Errorf("apt-cache policy %s: no candidate version", pkg)
}

// newestCached returns the complete cache entry with the greatest name.
func newestCached(root string) (hostKernel, bool) {
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "linux-image-") && complete(filepath.Join(root, e.Name())) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return hostKernel{}, false
	}
	sort.Strings(names)
	n := names[len(names)-1]
	return hostKernel{Dir: filepath.Join(root, n), Package: n}, true
}

// findModule finds name (or its compressed form) under the unpacked
// package's lib/modules.
func findModule(root, name string) (string, error) {
	var found string
	stem := strings.TrimSuffix(name, ".ko")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		b := filepath.Base(p)
		if !d.IsDir() && (b == name || b == stem+".ko.xz" || b == stem+".ko.zst") {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("module %s not found", name)
	}
	return found, nil
}

// copyModule copies a module, decompressing it if the package ships it
// compressed (busybox insmod takes plain ELF only).
func copyModule(src, dst string) error {
	switch {
	case strings.HasSuffix(src, ".xz"):
		return decompressTo(dst, "xz", "-dc", src)
	case strings.HasSuffix(src, ".zst"):
		return decompressTo(dst, "zstd", "-dc", src)
	}
	return copyFile(src, dst)
}

func decompressTo(dst string, prog string, args ...string) error {
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		return fmt.Errorf("%s %s: %w", prog, strings.Join(args, " "), err)
	}
	return os.WriteFile(dst, out, 0o644)
}

// run runs a command in dir and returns its combined output.
func run(dir, prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("exit status %d", ee.ExitCode())
	}
	return b.Bytes(), err
}

// copyFile copies src to dst, keeping the executable bits.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := bufio.NewReader(in).WriteTo(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
