package suite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSamsara stands in for the samsara binary (no KVM): run and record
// print "PROGRAM ok" (record writes a log file), inspect --json prints
// fixed figures (1000 bytes over 1 guest second; 9 commits, 1 squash),
// replay matches, except that a program named "diverge" diverges and one
// named "hang" never ends.
const fakeSamsara = `#!/bin/sh
echo "$*" >>"$(dirname "$0")/calls.log"
cmd=$1; shift
out=; ckpt=; rec=; daemon=
while [ $# -gt 0 ]; do
	case $1 in
	--daemon) daemon=$2; shift ;;
	--name|--label) shift ;;
	--save-checkpoint) ckpt=$2; shift ;;
	-o) out=$2; shift ;;
	--) shift; break ;;
	--json) ;;
	*.zst) rec=$1 ;;
	esac
	shift
done
prog=$1
case $cmd in
run)
	[ -n "$ckpt" ] && echo checkpoint >"$ckpt"
	[ "$prog" = hang ] && exec sleep 1000
	echo "$prog ok" ;;
record)
	echo "log of $prog" >"$out"
	[ -n "$daemon" ] && echo "samsara: recording rec-42 (queued)" >&2
	echo "$prog ok" ;;
inspect)
	echo '{"stats":{"file_bytes":1000},"vcpus":[{"chunks":4},{"chunks":6}],"end":{"guest_nanos":1000000000},"recorder":{"vcpus":[{"commits":9,"squashes":1}]}}' ;;
replay)
	if [ -n "$daemon" ]; then
		echo "samsara: replay rp-1 matched recording $1 (10 chunks)" >&2
		exit 0
	fi
	if grep -q diverge "$rec"; then
		echo "DIVERGED: replay diverged at chunk 3 (vcpu 1): rip: recorded 0x1, replayed 0x2" >&2
		exit 2
	fi
	sed 's/^log of //; s/$/ ok/' "$rec"
	echo "samsara: replay matched" >&2 ;;
esac
`

func fakeRun(t *testing.T, suiteText string, base *Results, daemon ...string) (*Results, Options) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "samsara")
	if err := os.WriteFile(bin, []byte(fakeSamsara), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinux", "initramfs.cpio"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(writeSuite(t, suiteText), "")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Binary: bin, Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initramfs.cpio"),
		CacheDir: filepath.Join(dir, "cache"), OutDir: filepath.Join(dir, "out"), Slots: 2, Baseline: base}
	if len(daemon) > 0 {
		o.Daemon = daemon[0]
	}
	r, err := Run(context.Background(), s, o)
	if err != nil {
		t.Fatal(err)
	}
	return r, o
}

func byName(r *Results) map[string]*Case {
	m := map[string]*Case{}
	for _, c := range r.Cases {
		m[c.Name] = c
	}
	return m
}

// TestRunFake runs the whole flow over the fake binary: figures, a
// divergence, a job past its time limit, a wrong output, the kept files,
// then a baseline regression.
func TestRunFake(t *testing.T) {
	text := `workloads:
  - name: good
    command: [good]
    expect: 'good ok'
  - name: div
    command: [diverge]
    modes: [serialized]
  - name: hang
    command: [hang]
    modes: [serialized]
    timeout: 1s
    replays: 0
  - name: wrong
    command: [good]
    modes: [parallel]
    expect: 'bad'
`
	r, o := fakeRun(t, text, nil)
	c := byName(r)
	if len(r.Cases) != 5 || r.Failed() != 3 {
		t.Fatalf("%d cases, %d failed; want 5 and 3", len(r.Cases), r.Failed())
	}
	g := c["good/2cpu/parallel"]
	if len(g.Failures) > 0 || g.LogBytes != 1000 || g.LogRate != 1000 || g.Chunks != 10 || g.SquashRate != 0.1 || len(g.ReplaySeconds) != 1 || g.RecordRunRatio <= 0 {
		t.Fatalf("good/2cpu/parallel: %+v", g)
	}
	if d := c["div/2cpu/serialized"]; len(d.Failures) != 1 || d.Failures[0].Kind != "divergence" || !strings.Contains(d.Failures[0].Message, "DIVERGED: replay diverged at chunk 3") {
		t.Fatalf("div: %+v", d.Failures)
	} else if b, err := os.ReadFile(filepath.Join(d.Kept, "replay.sh")); err != nil || !strings.Contains(string(b), o.Binary+" replay "+filepath.Join(d.Kept, "rec.zst")+" --from-checkpoint "+filepath.Join(d.Kept, "boot.ckpt")) {
		t.Fatalf("div's replay.sh: %v\n%s", err, b)
	}
	if h := c["hang/2cpu/serialized"]; len(h.Failures) == 0 || !strings.Contains(h.Failures[0].Message, "no result after 1s") {
		t.Fatalf("hang: %+v", h.Failures)
	}
	if w := c["wrong/2cpu/parallel"]; len(w.Failures) != 2 || !strings.Contains(w.Failures[0].Message, `run: the output does not match "bad"`) {
		t.Fatalf("wrong: %+v", w.Failures)
	}
	if _, err := os.Stat(filepath.Join(o.OutDir, "failed", "good_2cpu_serialized")); err == nil {
		t.Fatal("a passed case was kept")
	}

	// The baseline: good's log rate was half (a 2x regression).
	base := &Results{Cases: []*Case{{Name: "good/2cpu/serialized", RunSeconds: 1, RecordRunRatio: 1e9, LogRate: 500}}}
	r, _ = fakeRun(t, "workloads:\n  - name: good\n    command: [good]\n", base)
	g = byName(r)["good/2cpu/serialized"]
	if len(g.Failures) != 1 || g.Failures[0].Figure != "log_rate" || g.Kept == "" || g.ReplayCommand == "" {
		t.Fatalf("good against a 2x better log rate: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(g.Kept, "rec.zst")); err != nil {
		t.Fatalf("the regressed case's recording was not kept: %v", err)
	}
	if p := byName(r)["good/2cpu/parallel"]; len(p.Failures) != 0 {
		t.Fatalf("a case without a baseline failed: %+v", p.Failures)
	}
}

// TestRunFakeDaemon: with a daemon, record and replay go through it
// (record --daemon, replay --daemon SOCKET ID with the id record named).
func TestRunFakeDaemon(t *testing.T) {
	r, o := fakeRun(t, "workloads:\n  - name: good\n    command: [good]\n    modes: [serialized]\n", nil, "/run/x.sock")
	if r.Failed() != 0 {
		t.Fatalf("failures: %+v", r.Cases[0].Failures)
	}
	calls, err := os.ReadFile(filepath.Join(filepath.Dir(o.Binary), "calls.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"record --cpus 2 ", " --daemon /run/x.sock --name good/2cpu/serialized ", "\nreplay --daemon /run/x.sock rec-42\n", "\ninspect --json "} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("no %q in the calls:\n%s", want, calls)
		}
	}
}
