package daemon

// Checking a request before anything runs: every machine file must lie
// under an --images folder once symlinks are resolved (else 403), a kernel
// must be an ELF file, the vCPU count must fit the budget (else 400).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// errForbidden maps to 403, errBadRequest to 400.
var (
	errForbidden  = errors.New("forbidden")
	errBadRequest = errors.New("bad request")
)

// resolveImages makes the --images folders absolute with symlinks
// resolved, so that a file's resolved path can be compared to them.
func resolveImages(dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, fmt.Errorf("--images %s: %w", d, err)
		}
		if r, err = filepath.Abs(r); err != nil {
			return nil, fmt.Errorf("--images %s: %w", d, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// under reports whether path lies in one of dirs.
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if rel, err := filepath.Rel(d, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

// checkFile resolves a machine file named by field and checks that it
// lies under an --images folder and is a regular file. It returns the
// resolved path, which is what the job uses (a symlink swapped after the
// check cannot redirect it).
func (d *Daemon) checkFile(field, path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: %s %q: want an absolute path", errBadRequest, field, path)
	}
	clean := filepath.Clean(path)
	// The lexical check first: a path outside every --images folder is
	// refused without saying whether it exists.
	if !under(clean, d.images) {
		return "", fmt.Errorf("%w: %s %s is not under an --images folder", errForbidden, field, path)
	}
	resolved, err := filepath.EvalSymlinks(clean)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errBadRequest, field, err)
	}
	if !under(resolved, d.images) {
		return "", fmt.Errorf("%w: %s %s resolves to %s, outside every --images folder", errForbidden, field, path, resolved)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errBadRequest, field, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s %s is not a regular file", errBadRequest, field, path)
	}
	return resolved, nil
}

// elfMagic starts every ELF file (the System V ABI, "e_ident").
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// checkELF checks that path starts like an ELF file: the kernel must be
// an uncompressed vmlinux.
func checkELF(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: kernel: %v", errBadRequest, err)
	}
	defer f.Close()
	b := make([]byte, len(elfMagic))
	if _, err := io.ReadFull(f, b); err != nil || !bytes.Equal(b, elfMagic) {
		return fmt.Errorf("%w: kernel %s is not an ELF file (want an uncompressed vmlinux)", errBadRequest, path)
	}
	return nil
}

// memoryRE is the guest memory syntax of `samsara record --mem`.
var memoryRE = regexp.MustCompile(`^[0-9]+[KMGkmg]?$`)

// maxArgvBytes is what the guest's control page can hold for the program
// and its arguments (vmm's maxCommandBytes: a 4 KiB page less the 0x100
// offset of the command area).
const maxArgvBytes = 4096 - 0x100

// maxNameBytes bounds names and labels: they are for people and filters.
const maxNameBytes = 256

// validate checks a create request and resolves its paths.
func (d *Daemon) validate(req *CreateRecording) error {
	m := &req.Machine
	if m.CPUs < 1 || m.CPUs > d.cfg.MaxVCPUs {
		return fmt.Errorf("%w: machine.cpus %d: want 1 to %d (the daemon's --max-vcpus)", errBadRequest, m.CPUs, d.cfg.MaxVCPUs)
	}
	if m.Memory != "" && !memoryRE.MatchString(m.Memory) {
		return fmt.Errorf("%w: machine.memory %q: want a size like 256M or 1G", errBadRequest, m.Memory)
	}
	switch m.Mode {
	case "", "serialized", "parallel":
	default:
		return fmt.Errorf("%w: machine.mode %q: want serialized or parallel", errBadRequest, m.Mode)
	}
	n := 0
	for _, a := range m.Argv {
		n += len(a) + 1
	}
	if n+1 > maxArgvBytes {
		return fmt.Errorf("%w: machine.argv is %d bytes encoded: the guest takes at most %d", errBadRequest, n+1, maxArgvBytes)
	}
	if len(req.Name) > maxNameBytes {
		return fmt.Errorf("%w: name is longer than %d bytes", errBadRequest, maxNameBytes)
	}
	for k, v := range req.Labels {
		if k == "" || len(k)+len(v) > maxNameBytes || strings.ContainsRune(k, '=') {
			return fmt.Errorf("%w: label %q: want a non-empty key without '=' and key+value under %d bytes", errBadRequest, k, maxNameBytes)
		}
	}
	var err error
	switch {
	case m.Checkpoint != "":
		if m.Kernel != "" || m.Initrd != "" {
			return fmt.Errorf("%w: machine: give checkpoint or kernel and initrd, not both", errBadRequest)
		}
		if m.Checkpoint, err = d.checkFile("machine.checkpoint", m.Checkpoint); err != nil {
			return err
		}
	case m.Kernel == "" || m.Initrd == "":
		return fmt.Errorf("%w: machine: a checkpoint, or a kernel and an initrd, is required", errBadRequest)
	default:
		if m.Kernel, err = d.checkFile("machine.kernel", m.Kernel); err != nil {
			return err
		}
		if err := checkELF(m.Kernel); err != nil {
			return err
		}
		if m.Initrd, err = d.checkFile("machine.initrd", m.Initrd); err != nil {
			return err
		}
	}
	if m.Disk != "" {
		if m.Disk, err = d.checkFile("machine.disk", m.Disk); err != nil {
			return err
		}
	}
	return nil
}
