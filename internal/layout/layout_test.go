// Package layout holds the test of samsara's package import rules (the
// README's "Layout"): which internal package may depend on which.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/samsara-vmm/samsara"

// rules: a package (relative to the module) must not depend, directly or
// through another package, on any import path with one of these prefixes.
//
// Only rules that hold today are here. The layout issue also wants
// internal/vmm not to depend on internal/chunk, internal/commit,
// internal/ept, internal/log and (once it exists) internal/session: the
// recorders and the log still live in vmm (det_*.go, checkpoint.go's
// chunk.Marks). Add each rule here when the code that breaks it moves.
var rules = []struct {
	pkg    string   // the package the rule is about
	banned []string // import path prefixes it must not depend on
	why    string   // the reason, for the failure message
}{
	{"internal/devices", []string{module + "/", "github.com/bobuhiro11/gokvm"},
		"the device models are plain Go: no KVM and nothing of samsara (internal/devices/doc.go)"},
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
