package suite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pendingCase is what a passed case made, kept until the baseline
// comparison has had its say.
type pendingCase struct {
	rec     string
	console []namedText
	ckpt    string
	w       *Workload
}

// workRec is where c's recording is written while the suite runs.
func (r *runner) workRec(c *Case) string {
	return filepath.Join(r.opts.OutDir, "work", fileName(c.Name)+".zst")
}

// pending remembers a passed case's files in case the baseline fails it.
func (r *runner) pending(c *Case, w *Workload, console []namedText, ckpt string) {
	r.pendMu.Lock()
	defer r.pendMu.Unlock()
	r.pend[c] = pendingCase{rec: r.workRec(c), console: console, ckpt: ckpt, w: w}
}

// keepPending keeps a case that failed the baseline comparison.
func (r *runner) keepPending(c *Case) {
	r.pendMu.Lock()
	p, ok := r.pend[c]
	r.pendMu.Unlock()
	if ok {
		r.keep(c, p.w, p.console, p.ckpt)
	}
}

// keep moves a failed case's recording to DIR/failed/CASE with its
// consoles, a copy of its checkpoint, the failure messages and replay.sh,
// the exact command that replays it; c.Kept and c.ReplayCommand name them.
func (r *runner) keep(c *Case, w *Workload, console []namedText, ckpt string) {
	dir, err := filepath.Abs(filepath.Join(r.opts.OutDir, "failed", fileName(c.Name)))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		c.Failures = append(c.Failures, Failure{Kind: "error", Message: fmt.Sprintf("keeping the failed case: %v", err)})
		return
	}
	c.Kept = dir
	var msgs []string
	for _, f := range c.Failures {
		msgs = append(msgs, f.Message)
	}
	files := append(console, namedText{"failure.txt", strings.Join(msgs, "\n\n") + "\n"})
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.text), 0o644); err != nil {
			c.Failures = append(c.Failures, Failure{Kind: "error", Message: fmt.Sprintf("keeping %s: %v", f.name, err)})
		}
	}
	rec := filepath.Join(dir, "rec.zst")
	if err := os.Rename(r.workRec(c), rec); err != nil {
		return // no recording (record failed before writing one)
	}
	boot := filepath.Join(dir, "boot.ckpt")
	if err := copyFile(ckpt, boot); err != nil {
		c.Failures = append(c.Failures, Failure{Kind: "error", Message: err.Error()})
		return
	}
	cmd := []string{r.opts.Binary, "replay", rec, "--from-checkpoint", boot}
	cmd = append(cmd, machineFlags(w)...)
	c.ReplayCommand = shellJoin(cmd)
	script := "#!/bin/sh\n# Replays the failed case " + c.Name + " (samsara suite).\nexec " + c.ReplayCommand + "\n"
	if err := os.WriteFile(filepath.Join(dir, "replay.sh"), []byte(script), 0o755); err != nil {
		c.Failures = append(c.Failures, Failure{Kind: "error", Message: fmt.Sprintf("keeping replay.sh: %v", err)})
	}
}

// shellJoin quotes words for sh where they need it.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool {
			return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == ',' ||
				(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
		}) < 0 {
			q[i] = w
			continue
		}
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
