package daemon

import (
	"strings"
	"testing"
)

// TestExecArgv: the child's command line for each kind of task, as the
// one-shot CLI takes it.
func TestExecArgv(t *testing.T) {
	e := &ExecEngine{Binary: "samsara"}
	for _, c := range []struct {
		name string
		task Task
		want string
	}{
		{"record from a checkpoint", Task{Kind: TaskRecord, Log: "L", Console: "C", Machine: Machine{Checkpoint: "/i/c", CPUs: 2, Mode: "parallel", Argv: []string{"race", "100"}}},
			"record -o L --cpus 2 --mode parallel --console C --status-fd 3 --from-checkpoint /i/c -- race 100"},
		{"record a cold boot with a disk", Task{Kind: TaskRecord, Log: "L", Console: "C", Machine: Machine{Kernel: "/i/k", Initrd: "/i/r", Disk: "/i/d", CPUs: 1, Memory: "1G", Append: "quiet"}},
			"record -o L --cpus 1 --mem 1G --append quiet --console C --status-fd 3 --kernel /i/k --initrd /i/r --vm /i/d --"},
		{"replay", Task{Kind: TaskReplay, Log: "L", Console: "C", Machine: Machine{Checkpoint: "/i/c", CPUs: 2, Argv: []string{"x"}}},
			"replay L --console C --status-fd 3 --from-checkpoint /i/c"},
	} {
		if got := strings.Join(e.argv(c.task), " "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}
