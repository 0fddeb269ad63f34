package trace

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Kernel is what a trace needs to name the process a vCPU runs (who ran):
// where the guest kernel keeps each CPU's current task, and where pid,
// tgid and comm sit in its struct task_struct. Both come from the
// reference kernel's build (LoadKernel), never from constants here: a
// task_struct's layout changes with the kernel's configuration.
type Kernel struct {
	// CurrentTask is System.map's current_task: the per-CPU variable
	// holding the running task_struct pointer (arch/x86/kernel/cpu/common.c
	// in Linux 6.1). With PerCPU it is an offset from the CPU's per-CPU
	// base, which is its GS base in kernel mode (x86-64 SMP kernels link
	// the per-CPU section at 0: __per_cpu_start is 0 in System.map);
	// otherwise it is the variable's virtual address.
	CurrentTask uint64
	PerCPU      bool
	// PID, TGID and Comm are the fields' offsets in struct task_struct,
	// CommLen comm's size (TASK_COMM_LEN).
	PID, TGID, Comm uint64
	CommLen         int
}

// Task is a guest process (thread) as the kernel names it.
type Task struct {
	// Addr is its task_struct's virtual address (0: not known).
	Addr uint64
	PID  int32
	TGID int32
	Comm string
}

// String is "comm[tgid/pid]" (pid alone when it is the thread group's).
func (t Task) String() string {
	if t.PID == t.TGID {
		return fmt.Sprintf("%s[%d]", t.Comm, t.PID)
	}
	return fmt.Sprintf("%s[%d/%d]", t.Comm, t.TGID, t.PID)
}

// LoadKernel reads a kernel's System.map and task-offsets (written beside
// vmlinux by guest-images/build-kernel.sh from the kernel's asm-offsets).
func LoadKernel(systemMap, offsets string) (*Kernel, error) {
	syms, err := readSymbols(systemMap, "current_task", "__per_cpu_start")
	if err != nil {
		return nil, err
	}
	ct, ok := syms["current_task"]
	if !ok {
		return nil, fmt.Errorf("%s: no current_task symbol (not an x86-64 Linux System.map?)", systemMap)
	}
	start, hasStart := syms["__per_cpu_start"]
	k := &Kernel{CurrentTask: ct, PerCPU: hasStart && start == 0}
	offs, err := readOffsets(offsets)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *uint64
	}{{"pid", &k.PID}, {"tgid", &k.TGID}, {"comm", &k.Comm}} {
		v, ok := offs[f.name]
		if !ok {
			return nil, fmt.Errorf("%s: no %q offset", offsets, f.name)
		}
		*f.dst = v
	}
	n, ok := offs["COMM_LEN"]
	if !ok || n == 0 || n > 64 {
		return nil, fmt.Errorf("%s: COMM_LEN missing or not in 1..64", offsets)
	}
	k.CommLen = int(n)
	return k, nil
}

// readSymbols finds the named symbols in a System.map ("ADDR TYPE NAME"
// lines, ADDR in hex).
func readSymbols(path string, names ...string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("System.map: %w", err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"ADDRESS TYPE NAME\", got %q", path, line, sc.Text())
		}
		if !want[fs[2]] {
			continue
		}
		a, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: address %q: %w", path, line, fs[0], err)
		}
		out[fs[2]] = a
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// readOffsets reads a task-offsets file: "NAME VALUE" lines, VALUE in
// decimal as asm-offsets.h writes it.
func readOffsets(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("task offsets: %w (built beside vmlinux by guest-images/build-kernel.sh)", err)
	}
	out := map[string]uint64{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fs := strings.Fields(l)
		if len(fs) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"NAME VALUE\", got %q", path, i+1, l)
		}
		v, err := strconv.ParseUint(fs[1], 0, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, i+1, fs[0], err)
		}
		out[fs[0]] = v
	}
	return out, nil
}
