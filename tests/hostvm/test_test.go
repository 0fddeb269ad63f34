package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarizeCountsTopLevelAndListsSkips(t *testing.T) {
	console := `SAMSARA-HOSTVM-KVM-READY
SAMSARA-HOSTVM-BEGIN internal/pmc
=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
    b_test.go:12: needs PVM (module kvm_pvm): not here
--- SKIP: TestB (0.00s)
SAMSARA-HOSTVM-END internal/pmc
SAMSARA-HOSTVM-BEGIN tests
=== RUN   TestC
=== RUN   TestC/1cpu
    c_test.go:3: replay 1 diverged
        stderr:
        samsara: DIVERGED at chunk 7
=== RUN   TestC/2cpu
    c_test.go:4: fine
--- FAIL: TestC (3.00s)
    --- FAIL: TestC/1cpu (1.00s)
    --- PASS: TestC/2cpu (2.00s)
SAMSARA-HOSTVM-END tests
`
	var out bytes.Buffer
	s := summarize(strings.NewReader(console), &out)
	if out.String() != console {
		t.Error("the console was not copied through unchanged")
	}
	if s.passed != 1 || s.failed != 1 || s.skips != 1 {
		t.Errorf("passed %d failed %d skipped %d, want 1 1 1", s.passed, s.failed, s.skips)
	}
	if c := s.counts["tests"]; c == nil || *c != [3]int{0, 1, 0} {
		t.Errorf("tests counts %v, want [0 1 0]", c)
	}
	if len(s.failures) != 1 || s.failures[0] != "tests: TestC" {
		t.Errorf("failures %q", s.failures)
	}
	if want := "tests: TestC/1cpu: replay 1 diverged\n      stderr:\n      samsara: DIVERGED at chunk 7"; len(s.reasons) != 1 || s.reasons[0] != want {
		t.Errorf("reasons %q, want [%q]", s.reasons, want)
	}
	if len(s.skipped) != 1 || s.skipped[0] != "internal/pmc: TestB: needs PVM (module kvm_pvm): not here" {
		t.Errorf("skipped %q", s.skipped)
	}
}

func TestSkipPatternAnchorsEveryLevel(t *testing.T) {
	saved := svmSkips
	defer func() { svmSkips = saved }()
	svmSkips = map[string]string{
		"tests.TestX":            "r",
		"tests.TestY/sub_+_more": "r",
		"internal/ept.TestZ":     "r",
	}
	if got, want := skipPattern("tests"), `^TestX$|^TestY$/^sub_\+_more$`; got != want {
		t.Errorf("skipPattern(tests) = %q, want %q", got, want)
	}
	if got := skipPattern("internal/pmc"); got != "^$" {
		t.Errorf("a package with no skips got %q, want ^$ (skips nothing)", got)
	}
}

// TestIsHostStall: the host kernel's stuck-CPU reports end a host run
// early (as a wedge, retried); ordinary lines do not.
func TestIsHostStall(t *testing.T) {
	for line, want := range map[string]bool{
		"[  549.818378] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:":           true,
		"[   32.869453] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [x:119]":       true,
		"[  700.102030] rcu: INFO: rcu_preempt self-detected stall on CPU":               true,
		"[  700.102030] rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks":  true,
		"[  700.102030] rcu: \t1-...!: (1 GPs behind) idle=a4c/0/0x1":                    false,
		"[    8.686481] kvm [100]: vcpu0, guest rIP: 0xffffffff81002a2a Unhandled WRMSR": false,
		"--- PASS: TestDevBusMap (0.03s)":                                                false,
	} {
		if got := isHostStall(line); got != want {
			t.Errorf("isHostStall(%q) = %v, want %v", line, got, want)
		}
	}
}

// TestIsTestProgress: a test starting or ending, or a package's markers,
// reset the host's progress bound; logs, kernel messages and the tests'
// own output do not.
func TestIsTestProgress(t *testing.T) {
	for line, want := range map[string]bool{
		"=== RUN   TestConformance/cpl3/dirtylog":                         true,
		"--- PASS: TestDevBusMap (0.03s)":                                 true,
		"    --- FAIL: TestCorpus/parallel (292.17s)":                     true,
		markBegin + " internal/ept":                                       true,
		markEnd + " internal/ept":                                         true,
		"    conformance_test.go:91: chunk 1: read [0x2 0x3] write [0x2]": false,
		"[  549.818378] INFO: task kworker/0:1 blocked for more than 120": false,
		"PASS": false,
	} {
		if got := isTestProgress(line); got != want {
			t.Errorf("isTestProgress(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestFailedMessagesKeepsEachMessagesEnds(t *testing.T) {
	out := `ok  	example/a	0.1s
--- FAIL: TestGDB (4.25s)
    gdb_test.go:37: gdb session:
        line 1
        line 2
` + strings.Repeat("        more\n", 30) + `        last line
    gdb_test.go:61: the replay did not match
--- FAIL: TestRecordProfile (3.00s)
    --- FAIL: TestRecordProfile/parallel (1.00s)
        profile_test.go:27: record exited 1
            samsara: diverged
FAIL
FAIL	example/tests	40.0s
`
	fs := failedMessages(strings.NewReader(out))
	if len(fs) != 3 || fs[0].test != "TestGDB" || fs[1].test != "TestRecordProfile" || fs[2].test != "TestRecordProfile/parallel" {
		t.Fatalf("failures %+v", fs)
	}
	if m := fs[0].messages; len(m) != 2 || len(m[0]) != maxReasonLines || m[0][0] != "gdb_test.go:37: gdb session:" ||
		m[0][maxReasonLines-1] != "last line" || m[1][0] != "gdb_test.go:61: the replay did not match" {
		t.Errorf("TestGDB's messages %q", m)
	}
	if m := fs[2].messages; len(m) != 1 || strings.Join(m[0], "|") != "profile_test.go:27: record exited 1|samsara: diverged" {
		t.Errorf("the subtest's messages %q", m)
	}
}
