package trace

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKernel(t *testing.T) {
	dir := t.TempDir()
	smap := writeFile(t, dir, "System.map", "0000000000000000 D __per_cpu_start\n0000000000016d00 D current_task\nffffffff81000000 T _stext\n")
	offs := writeFile(t, dir, "task-offsets", "pid 1184\ntgid 1188\ncomm 1560\nCOMM_LEN 16\n")
	k, err := LoadKernel(smap, offs)
	if err != nil {
		t.Fatal(err)
	}
	want := Kernel{CurrentTask: 0x16d00, PerCPU: true, PID: 1184, TGID: 1188, Comm: 1560, CommLen: 16}
	if *k != want {
		t.Errorf("LoadKernel = %+v, want %+v", *k, want)
	}
	// A kernel whose per-CPU section is not linked at 0 (uniprocessor):
	// current_task is an address.
	up := writeFile(t, dir, "up.map", "ffffffff82000000 D __per_cpu_start\nffffffff82016d00 D current_task\n")
	if k, err := LoadKernel(up, offs); err != nil || k.PerCPU || k.CurrentTask != 0xffffffff82016d00 {
		t.Errorf("uniprocessor map: %+v, %v", k, err)
	}

	for _, tc := range []struct {
		name, smap, offs, want string
	}{
		{"no current_task", "0000000000000000 D __per_cpu_start\n", "pid 1\ntgid 2\ncomm 3\nCOMM_LEN 16\n", "no current_task"},
		{"bad map line", "0000000000016d00 current_task\n", "pid 1\ntgid 2\ncomm 3\nCOMM_LEN 16\n", "ADDRESS TYPE NAME"},
		{"missing comm", "0000000000016d00 D current_task\n", "pid 1\ntgid 2\nCOMM_LEN 16\n", `no "comm" offset`},
		{"bad value", "0000000000016d00 D current_task\n", "pid x\n", "pid"},
		{"no COMM_LEN", "0000000000016d00 D current_task\n", "pid 1\ntgid 2\ncomm 3\n", "COMM_LEN"},
	} {
		s := writeFile(t, dir, "m", tc.smap)
		o := writeFile(t, dir, "o", tc.offs)
		if _, err := LoadKernel(s, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadKernel(filepath.Join(dir, "absent"), offs); err == nil {
		t.Error("a missing System.map was accepted")
	}
}

// TestWhoRan writes task records around instructions and user stretches
// and checks the records read back and the summary's tally.
func TestWhoRan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tr")
	s, err := Create(dir, FormatNative, 2)
	if err != nil {
		t.Fatal(err)
	}
	a := Task{Addr: 0xffff888000100000, PID: 57, TGID: 57, Comm: "threads2"}
	b := Task{Addr: 0xffff888000200000, PID: 58, TGID: 57, Comm: "threads2"}
	in := func(chunk uint32, i uint64) *Insn {
		return &Insn{Chunk: chunk, Index: i, RIP: 0xffffffff81000000 + i, Bytes: []byte{0x90}}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// vCPU 0: chunk 0 runs a (2 instructions, a user stretch), switches to b
	// (1 instruction); chunk 2 starts in b (1 instruction).
	must(s.Chunk(0, 0, 0))
	must(s.Task(0, 0, 0, a))
	must(s.Insn(0, in(0, 0)))
	must(s.User(0, 0, 1, 0x401000))
	must(s.Fault(0, 0, 1, 0x401234))
	must(s.Insn(0, in(0, 1)))
	must(s.Task(0, 0, 2, b))
	must(s.Insn(0, in(0, 2)))
	must(s.Chunk(0, 2, 0))
	must(s.Task(0, 2, 0, b))
	must(s.Insn(0, in(2, 0)))
	// vCPU 1: one chunk in a.
	must(s.Chunk(1, 1, 0))
	must(s.Task(1, 1, 0, a))
	must(s.Insn(1, in(1, 0)))
	must(s.Finish())

	got := s.WhoRan()
	want := []Ran{
		// equal instructions: by pid
		{VCPU: 0, Task: a, Chunks: 1, Instructions: 2, UserStretches: 1},
		{VCPU: 0, Task: b, Chunks: 1, Instructions: 2},
		{VCPU: 1, Task: a, Chunks: 1, Instructions: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("WhoRan = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("WhoRan[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	sum, err := os.ReadFile(filepath.Join(dir, WhoRanFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sum), `"threads2"`) || strings.Count(string(sum), "\n") != 3+len(want) {
		t.Errorf("%s:\n%s", WhoRanFile, sum)
	}

	data, err := os.ReadFile(filepath.Join(dir, FileName(FormatNative, 0)))
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := ReadNative(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var tasks []Task
	faults := 0
	for _, r := range recs {
		switch {
		case r.Kind == KindTask:
			tasks = append(tasks, r.Task)
		case r.Kind == KindFault && r.Insn.RIP == 0x401234 && r.Insn.Index == 1:
			faults++
		}
	}
	if faults != 1 {
		t.Errorf("%d fault records read back, want 1", faults)
	}
	if len(tasks) != 3 || tasks[0] != a || tasks[1] != b || tasks[2] != b {
		t.Errorf("task records read back: %+v", tasks)
	}
}

// TestWhoRanAbsent: a trace that names no task has no summary file.
func TestWhoRanAbsent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tr")
	s, err := Create(dir, FormatText, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Chunk(0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, WhoRanFile)); !os.IsNotExist(err) {
		t.Errorf("%s without task records: %v", WhoRanFile, err)
	}
}
