// Package layout holds the test of samsara's package import rules (the
// README's "Layout"): which internal package may depend on which.
package layout

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/samsara-vmm/samsara"

// rules: a package (relative to the module) must not depend, directly or
// through another package, on any import path with one of these prefixes.
//
// A rule names what a package must not reach, so that each mechanism
// stays in the package named for it: the machine (vmm) knows nothing of
// chunks, commits, page trackers, logs or sessions; the policies (chunk,
// commit) know nothing of KVM or the machine; the log format knows
// nothing of how it is made.
var rules = []struct {
	pkg    string   // the package the rule is about
	banned []string // import path prefixes it must not depend on
	why    string   // the reason, for the failure message
}{
	{"internal/devices", []string{module + "/", "github.com/bobuhiro11/gokvm"},
		"the device models are plain Go: no KVM and nothing of samsara (internal/devices/doc.go)"},
	{"internal/vmm", []string{module + "/internal/chunk", module + "/internal/commit", module + "/internal/ept",
		module + "/internal/log", module + "/internal/session"},
		"the machine is driven by a session and knows nothing of chunks, commits, page trackers or logs (internal/session's doc)"},
	{"internal/chunk", []string{module + "/internal/vmm", module + "/internal/session", "github.com/bobuhiro11/gokvm"},
		"the chunk-end policy is plain Go over addresses and times"},
	{"internal/commit", []string{module + "/internal/vmm", module + "/internal/session", module + "/internal/ept", "github.com/bobuhiro11/gokvm"},
		"the commit order works on page sets, not on machines"},
	{"internal/daemon", []string{module + "/internal/vmm", module + "/internal/session", module + "/internal/kvm", "github.com/bobuhiro11/gokvm"},
		"the daemon runs each job as a child samsara process: a crashing machine never takes it down"},
	{"internal/suite", []string{module + "/internal/vmm", module + "/internal/session", module + "/internal/kvm", module + "/internal/log", "github.com/bobuhiro11/gokvm"},
		"the suite runs every job as a child samsara process and reads recordings through inspect --json"},
	{"internal/log", []string{module + "/internal/vmm", module + "/internal/session", "github.com/bobuhiro11/gokvm"},
		"the log format is read by tools that run no machine (inspect)"},
	{"internal/gdbstub", []string{module + "/internal/vmm", module + "/internal/session", module + "/internal/kvm", "github.com/bobuhiro11/gokvm"},
		"the gdb protocol talks to a Target interface it declares; the replay side lives in internal/session (debug_*.go)"},
	{"internal/trace", []string{module + "/internal/vmm", module + "/internal/session", module + "/internal/kvm", "github.com/bobuhiro11/gokvm"},
		"the trace formats are read by tools that run no machine; internal/session single-steps the replay and writes through them"},
	{"internal/snapshot", []string{"github.com/bobuhiro11/gokvm", module + "/internal/vmm", module + "/internal/kvm",
		module + "/internal/chunk", module + "/internal/commit", module + "/internal/ept", module + "/internal/log",
		module + "/internal/nde", module + "/internal/pmc", module + "/internal/session"},
		"the checkpoint format has its own state structs: only internal/devices and internal/treehash of samsara (internal/snapshot/doc.go)"},
}

// deps lists every package of the module with its dependencies (go list's
// Deps: every package it imports, directly or not).
func deps(t *testing.T) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go command to list packages with: %v", err)
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

func TestImportRules(t *testing.T) {
	all := deps(t)
	for _, r := range rules {
		pkg := module + "/" + r.pkg
		ds, ok := all[pkg]
		if !ok {
			t.Errorf("%s: no such package (go list found %d)", r.pkg, len(all))
			continue
		}
		for _, d := range ds {
			for _, b := range r.banned {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s depends on %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
}

// TestNoEnvironmentReads: no internal package reads the environment; a
// switch is a flag or an Options field, and one that changes a recording
// is in its header (issue 12). Tests learn the build folder from
// tests/testenv.
func TestNoEnvironmentReads(t *testing.T) {
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, call := range []string{"os.Getenv(", "os.LookupEnv(", "os.Environ(", "syscall.Getenv("} {
			if strings.Contains(string(b), call) && !strings.HasSuffix(path, "layout_test.go") {
				t.Errorf("%s calls %s: internal packages take options, not environment variables", path, call)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
