package suite

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// resolve applies the defaults to every workload, makes image paths
// absolute (relative to the suite file) and checks what can be checked
// before anything runs.
func (s *Suite) resolve(initrd string) error {
	var errs []error
	if len(s.Workloads) == 0 {
		errs = append(errs, fmt.Errorf("%s: workloads: the suite lists no workloads", s.Path))
	}
	seen := map[string]int{}
	var initrdFiles map[string]bool
	if initrd != "" {
		// An initramfs that is not an uncompressed newc archive (a user's
		// compressed one) leaves the programs unchecked, not the suite
		// unrun: the check is a convenience.
		initrdFiles, _ = cpioNames(initrd)
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		w.Settings = merge(w.Settings, s.Defaults)
		at := fmt.Sprintf("%s:%d: workloads[%d]", s.Path, w.Line, i)
		if prev, ok := seen[w.Name]; ok {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of the workload on line %d", at, w.Name, prev))
		}
		seen[w.Name] = w.Line
		errs = append(errs, w.check(at, filepath.Dir(s.Path), initrdFiles)...)
	}
	return errors.Join(errs...)
}

// merge fills what w leaves unset from d, then from the built-in defaults.
func merge(w, d Settings) Settings {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	w.Image, w.Cwd, w.Stdin = pick(w.Image, d.Image), pick(w.Cwd, d.Cwd), pick(w.Stdin, d.Stdin)
	w.Memory, w.Append, w.Expect = pick(w.Memory, d.Memory), pick(w.Append, d.Append), pick(w.Expect, d.Expect)
	if w.VCPUs == nil {
		w.VCPUs = d.VCPUs
	}
	if w.VCPUs == nil {
		w.VCPUs = []int{2} // the short suite's and README's machine
	}
	if w.Modes == nil {
		w.Modes = d.Modes
	}
	if w.Modes == nil {
		w.Modes = []string{"serialized", "parallel"}
	}
	if w.Env == nil {
		w.Env = d.Env
	}
	if w.Replays == nil {
		w.Replays = d.Replays
	}
	if w.Replays == nil {
		one := 1
		w.Replays = &one
	}
	if w.Timeout.Duration == 0 {
		w.Timeout = d.Timeout
	}
	if w.Timeout.Duration == 0 {
		w.Timeout.Duration = defaultTimeout
	}
	for _, t := range []struct{ w, d *float64 }{
		{&w.Thresholds.RecordRunRatio, &d.Thresholds.RecordRunRatio},
		{&w.Thresholds.LogRate, &d.Thresholds.LogRate},
	} {
		if *t.w == 0 {
			*t.w = *t.d
		}
		if *t.w == 0 {
			*t.w = defaultThreshold
		}
	}
	return w
}

// check validates one merged workload; at is "FILE:LINE: workloads[i]".
func (w *Workload) check(at, dir string, initrdFiles map[string]bool) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, key, fmt.Sprintf(format, args...)))
	}
	if !validName.MatchString(w.Name) {
		bad("name", "%q: want letters, digits, '.', '_' or '-' (it names files and test cases)", w.Name)
	}
	if len(w.Command) == 0 {
		bad("command", "missing: the program to run and its arguments")
	}
	for _, n := range w.VCPUs {
		if n < 1 || n > maxVCPUs {
			bad("vcpus", "%d: must be between 1 and %d", n, maxVCPUs)
		}
	}
	for _, m := range w.Modes {
		if !knownModes[m] {
			bad("modes", "%q: want serialized or parallel", m)
		}
	}
	if *w.Replays < 0 {
		bad("replays", "%d: must be 0 or more", *w.Replays)
	}
	if w.Thresholds.RecordRunRatio < 1 || w.Thresholds.LogRate < 1 {
		bad("thresholds", "factors below 1 would fail against the suite's own output")
	}
	if _, err := regexp.Compile(w.Expect); err != nil {
		bad("expect", "not a regexp: %v", err)
	}
	if w.Image != "" {
		if !filepath.IsAbs(w.Image) {
			w.Image = filepath.Join(dir, w.Image)
		}
		if _, err := os.Stat(w.Image); err != nil {
			bad("image", "%v", err)
			return errs
		}
	}
	if len(w.Command) > 0 {
		if err := w.checkCommand(initrdFiles); err != nil {
			bad("command", "%v", err)
		}
	}
	return errs
}

// maxVCPUs is vmm.MaxCPUs (the suite runs machines only through the
// samsara binary, so it does not import vmm).
const maxVCPUs = 8

// checkCommand checks that the program is where the guest's init will
// look for it (guest-images/init/init.c: a name without a slash in /bin,
// then /mnt; /mnt is the image's root). Paths it cannot check (neither
// /bin nor /mnt, or an image without debugfs on the host) pass.
func (w *Workload) checkCommand(initrdFiles map[string]bool) error {
	prog := w.Command[0]
	onImage := func(p string) (bool, bool) { // found, checkable
		if w.Image == "" {
			return false, true
		}
		return imageHas(w.Image, p)
	}
	switch {
	case !strings.Contains(prog, "/"):
		if initrdFiles == nil {
			return nil
		}
		found, ok := onImage("/" + prog)
		if initrdFiles["bin/"+prog] || found || !ok {
			return nil
		}
		return fmt.Errorf("%q is neither in the initramfs's /bin nor on the image", prog)
	case strings.HasPrefix(prog, "/mnt/"):
		if w.Image == "" {
			return fmt.Errorf("%q is on /mnt, but the workload has no image", prog)
		}
		if found, ok := onImage(strings.TrimPrefix(prog, "/mnt")); ok && !found {
			return fmt.Errorf("%q is not on the image %s", prog, w.Image)
		}
	case strings.HasPrefix(prog, "/bin/") && initrdFiles != nil && !initrdFiles[strings.TrimPrefix(prog, "/")]:
		return fmt.Errorf("%q is not in the initramfs", prog)
	}
	return nil
}

// imageHas asks debugfs (e2fsprogs, which guest-images/build-disk.sh uses
// too) whether the ext2 image has path p; ok is false when it cannot tell.
func imageHas(img, p string) (found, ok bool) {
	debugfs, err := exec.LookPath("debugfs")
	for _, c := range []string{"/usr/sbin/debugfs", "/sbin/debugfs"} { // not on a user's PATH
		if err != nil {
			debugfs, err = c, nil
			if _, serr := os.Stat(c); serr != nil {
				err = serr
			}
		}
	}
	if err != nil {
		return false, false
	}
	out, err := exec.Command(debugfs, "-R", "stat "+p, img).CombinedOutput()
	if err != nil {
		return false, false
	}
	return strings.Contains(string(out), "Inode:"), true
}
