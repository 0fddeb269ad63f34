package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: every bad request of issue 13 item 6 gets its 4xx with a
// JSON error that says what is wrong, and the daemon keeps serving.
func TestBadInput(t *testing.T) {
	e := newEnv(t, 2, "")
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.ckpt")
	os.WriteFile(secret, []byte("x"), 0o600)
	link := filepath.Join(e.images, "link.ckpt")
	os.Symlink(secret, link)
	notELF := filepath.Join(e.images, "bzImage")
	os.WriteFile(notELF, []byte("MZ not an ELF"), 0o600)
	initrd := filepath.Join(e.images, "initramfs.cpio")
	os.WriteFile(initrd, []byte("070701"), 0o600)
	ok := func(m Machine) []byte { return mustJSON(CreateRecording{Machine: m}) }
	r := e.create(1, nil)
	e.nextJob()

	for _, c := range []struct {
		name, method, path, ctype string
		body                      []byte
		status                    int
		says                      string
	}{
		{"malformed JSON", "POST", "/v1/recordings", "application/json", []byte(`{"machine": {`), 400, "malformed JSON"},
		{"not an object", "POST", "/v1/recordings", "", []byte(`[1,2]`), 400, "malformed JSON"},
		{"trailing data", "POST", "/v1/recordings", "", append(ok(Machine{Checkpoint: e.ckpt, CPUs: 1}), []byte(`{}`)...), 400, "data after"},
		{"empty body", "POST", "/v1/recordings", "", nil, 400, "empty body"},
		{"unknown field", "POST", "/v1/recordings", "", []byte(`{"machine": {"cpus": 1, "checkpoint": "` + e.ckpt + `"}, "privileged": true}`), 400, `unknown field "privileged"`},
		{"unknown machine field", "POST", "/v1/recordings", "", []byte(`{"machine": {"cpus": 1, "vcpus": 2}}`), 400, `unknown field "vcpus"`},
		{"wrong content type", "POST", "/v1/recordings", "text/plain", ok(Machine{Checkpoint: e.ckpt, CPUs: 1}), 415, "Content-Type"},
		{"oversize body", "POST", "/v1/recordings", "", []byte(`{"name": "` + strings.Repeat("a", maxBodyBytes) + `"}`), 413, "larger than"},
		{"missing kernel", "POST", "/v1/recordings", "", ok(Machine{Kernel: filepath.Join(e.images, "vmlinux"), Initrd: initrd, CPUs: 1}), 400, "no such file"},
		{"non-ELF kernel", "POST", "/v1/recordings", "", ok(Machine{Kernel: notELF, Initrd: initrd, CPUs: 1}), 400, "not an ELF file"},
		{"no kernel or checkpoint", "POST", "/v1/recordings", "", ok(Machine{CPUs: 1}), 400, "required"},
		{"path outside --images", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: secret, CPUs: 1}), 403, "not under an --images folder"},
		{"dot-dot out of --images", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.images + "/../" + filepath.Base(filepath.Dir(e.images)) + "/x", CPUs: 1}), 403, "not under"},
		{"symlink out of --images", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: link, CPUs: 1}), 403, "outside every --images folder"},
		{"disk outside --images", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, Disk: secret, CPUs: 1}), 403, "machine.disk"},
		{"relative path", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: "booted.ckpt", CPUs: 1}), 400, "absolute path"},
		{"cpus 0", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, CPUs: 0}), 400, "machine.cpus 0"},
		{"cpus above the maximum", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, CPUs: 3}), 400, "want 1 to 2"},
		{"bad memory", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, CPUs: 1, Memory: "lots"}), 400, "machine.memory"},
		{"bad mode", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, CPUs: 1, Mode: "fast"}), 400, "machine.mode"},
		{"argv too long", "POST", "/v1/recordings", "", ok(Machine{Checkpoint: e.ckpt, CPUs: 1, Argv: []string{strings.Repeat("a", maxArgvBytes)}}), 400, "machine.argv"},
		{"bad state filter", "GET", "/v1/recordings?state=sleeping", "", nil, 400, "not a recording state"},
		{"bad label filter", "GET", "/v1/recordings?label=nokey", "", nil, 400, "key=value"},
		{"unknown id: get", "GET", "/v1/recordings/nosuch", "", nil, 404, `no recording "nosuch"`},
		{"unknown id: stop", "POST", "/v1/recordings/nosuch/stop", "", nil, 404, "no recording"},
		{"unknown id: delete", "DELETE", "/v1/recordings/nosuch", "", nil, 404, "no recording"},
		{"unknown id: console", "GET", "/v1/recordings/nosuch/console", "", nil, 404, "no recording"},
		{"unknown id: log", "GET", "/v1/recordings/nosuch/log", "", nil, 404, "no recording"},
		{"unknown id: replay", "POST", "/v1/recordings/nosuch/replays", "", nil, 404, "no recording"},
		{"unknown replay id", "GET", "/v1/recordings/" + r.ID + "/replays/nosuch", "", nil, 404, `no replay "nosuch"`},
		{"unknown replay id: console", "GET", "/v1/recordings/" + r.ID + "/replays/nosuch/console", "", nil, 404, `no replay "nosuch"`},
		{"replay of a running recording", "POST", "/v1/recordings/" + r.ID + "/replays", "", nil, 409, "only finished"},
		{"body on stop", "POST", "/v1/recordings/" + r.ID + "/stop", "", []byte(`{"force": true}`), 400, "takes no body"},
		{"unknown endpoint", "GET", "/v2/recordings", "", nil, 404, "no endpoint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, msg := e.raw(c.method, c.path, c.ctype, c.body)
			if status != c.status || !strings.Contains(msg, c.says) {
				t.Errorf("HTTP %d %q, want %d saying %q", status, msg, c.status, c.says)
			}
			var h Health
			if err := e.c.Do("GET", "/v1/health", nil, &h); err != nil {
				t.Fatalf("the daemon stopped serving: %v", err)
			}
		})
	}
	// Nothing bad was accepted: only the one good recording exists.
	if rs, _ := e.c.List(""); len(rs) != 1 {
		t.Errorf("%d recordings, want 1: a bad request was accepted", len(rs))
	}
}
