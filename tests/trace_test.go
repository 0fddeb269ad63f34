package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/trace"
)

// traceChunks bounds the traced window: the first chunks of a short
// 2-vCPU recording hold both vCPUs and some 10^4-10^5 kernel
// instructions, a few seconds of single-stepping under PVM (the whole
// recording of `true` takes ~12 s per expansion).
const traceChunks = "0-9"

// runTrace expands rec into a new directory and returns it.
func runTrace(t *testing.T, rec, ckpt string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "trace")
	r := samsara(t, resumeTimeout, append([]string{"trace", rec, "--from-checkpoint", ckpt, "-o", dir, "--chunks", traceChunks}, args...)...)
	if r.status != 0 || !strings.Contains(r.stderr, "trace matched the recording") {
		t.Fatalf("trace %v: status %d\nstderr:\n%s", args, r.status, tail(r.stderr))
	}
	return dir
}

// readNativeTrace reads every vCPU's native trace file in dir.
func readNativeTrace(t *testing.T, dir string, cpus int) ([][]trace.Record, [][]byte) {
	t.Helper()
	var recs [][]trace.Record
	var raw [][]byte
	for v := range cpus {
		b, err := os.ReadFile(filepath.Join(dir, trace.FileName(trace.FormatNative, v)))
		if err != nil {
			t.Fatal(err)
		}
		got, rs, err := trace.ReadNative(bytes.NewReader(b))
		if err != nil || got != v {
			t.Fatalf("vcpu %d's trace (file says vcpu %d): %v", v, got, err)
		}
		recs, raw = append(recs, rs), append(raw, b)
	}
	return recs, raw
}

// insns are the instruction records of a trace.
func insns(rs []trace.Record) []trace.Insn {
	var out []trace.Insn
	for _, r := range rs {
		if r.Kind == trace.KindInsn {
			out = append(out, r.Insn)
		}
	}
	return out
}

// TestTrace expands a short 2-vCPU recording (issue 16): two expansions
// are byte-identical, each vCPU has stepped instructions with chunk
// markers, the ChampSim output reads back in input_instr's layout with
// taken and not-taken branches, and a diverged recording fails as replay
// does and leaves no trace.
func TestTrace(t *testing.T) {
	requireKVM(t)
	ckpt := bootedCheckpoint(t, 2)
	_, rec := recordAndReplayN(t, 0, 2, ckpt, nil, "threads2", "1000")
	a := runTrace(t, rec, ckpt)
	b := runTrace(t, rec, ckpt)
	ra, rawA := readNativeTrace(t, a, 2)
	_, rawB := readNativeTrace(t, b, 2)
	for v := range 2 {
		if !bytes.Equal(rawA[v], rawB[v]) {
			t.Errorf("vcpu %d: two expansions differ (%d and %d bytes)", v, len(rawA[v]), len(rawB[v]))
		}
		n := len(insns(ra[v]))
		if n == 0 || ra[v][0].Kind != trace.KindChunk {
			t.Errorf("vcpu %d: %d instructions, first record kind %d (want a chunk marker)", v, n, ra[v][0].Kind)
		}
		if end := ra[v][len(ra[v])-1]; end.Total != uint64(n) {
			t.Errorf("vcpu %d: end record counts %d instructions, the trace holds %d", v, end.Total, n)
		}
		t.Logf("vcpu %d: %d kernel instructions in chunks %s", v, n, traceChunks)
	}
	checkTraceContents(t, ra[0])
	checkWhoRan(t, a, ra)
	checkVCPUFilter(t, runTrace(t, rec, ckpt, "--vcpu", "1", "--format", "text"), len(insns(ra[1])))
	checkChampSim(t, runTrace(t, rec, ckpt, "--format", "champsim"), ra)
	checkWindow(t, rec, ckpt, ra)
	checkDivergedTrace(t, rec, ckpt)
}

// checkWindow traces between two positions of vCPU 0's full trace (a
// third and two thirds into it; --from/--to): every vCPU's trace holds
// exactly the full trace's instructions at positions between them.
func checkWindow(t *testing.T, rec, ckpt string, full [][]trace.Record) {
	t.Helper()
	all := insns(full[0])
	if len(all) < 3 {
		t.Fatalf("vcpu 0 has %d instructions: too few to cut a window", len(all))
	}
	a, b := all[len(all)/3], all[2*len(all)/3]
	pos := func(in trace.Insn) string { return fmt.Sprintf("%d.%d", in.Chunk, in.Index) }
	before := func(x, y trace.Insn) bool { return x.Chunk < y.Chunk || x.Chunk == y.Chunk && x.Index < y.Index }
	got, _ := readNativeTrace(t, runTrace(t, rec, ckpt, "--from", pos(a), "--to", pos(b)), 2)
	for v := range 2 {
		var want []string
		for _, in := range insns(full[v]) {
			if !before(in, a) && !before(b, in) {
				want = append(want, fmt.Sprintf("%s %#x", pos(in), in.RIP))
			}
		}
		var have []string
		for _, in := range insns(got[v]) {
			have = append(have, fmt.Sprintf("%s %#x", pos(in), in.RIP))
		}
		if strings.Join(have, "\n") != strings.Join(want, "\n") {
			t.Errorf("vcpu %d, --from %s --to %s: %d instructions, want the full trace's %d between them (first %v, want first %v)",
				v, pos(a), pos(b), len(have), len(want), have[:min(len(have), 1)], want[:min(len(want), 1)])
		}
	}
	t.Logf("--from %s --to %s: vcpu 0 holds %d instructions", pos(a), pos(b), len(insns(got[0])))
}

// checkTraceContents checks the first vCPU's records: stepped kernel
// instructions (and, on hardware virtualization, user instructions) whose
// bytes decode, memory accesses with physical addresses, positions in
// order.
func checkTraceContents(t *testing.T, rs []trace.Record) {
	t.Helper()
	mem, last := 0, trace.Insn{}
	for i, in := range insns(rs) {
		kernel := in.CPL == 0 && in.RIP >= 0xffff800000000000
		user := in.CPL == 3 && in.RIP < 0x800000000000 && !onPVM()
		if !kernel && !user || len(in.Bytes) == 0 {
			t.Fatalf("instruction %d: %+v is not a stepped kernel (or, off PVM, user) instruction", i, in)
		}
		if i > 0 && in.Chunk == last.Chunk && in.Index != last.Index+1 {
			t.Fatalf("instruction %d: position %d.%d after %d.%d", i, in.Chunk, in.Index, last.Chunk, last.Index)
		}
		for _, a := range in.Mem {
			if a.Flags&trace.AccessUnmapped == 0 && a.PA != 0 {
				mem++
			}
		}
		last = in
	}
	if mem == 0 {
		t.Error("no memory access with a physical address in the trace")
	}
}

// checkWhoRan checks the trace's processes (who ran): every chunk marker
// is followed by the task its vCPU runs, every task was read (a pid of 0
// or more and a name), some task is a process (pid > 0, not an idle
// task), another task (task_struct) named within a chunk follows an
// instruction of __switch_to (where the kernel writes current_task; the
// same task named again has changed its name or ids: exec, in a page
// fault's handler that ran within a step on hardware virtualization),
// and whoran.txt's
// instructions add up to the trace's per vCPU.
func checkWhoRan(t *testing.T, dir string, recs [][]trace.Record) {
	t.Helper()
	swFrom, swTo := kernelSymbolRange(t, "__switch_to")
	seen := map[string]bool{}
	process, switches := false, 0
	for v, rs := range recs {
		var prev, task trace.Record
		for i, r := range rs {
			if prev.Kind == trace.KindChunk && r.Kind != trace.KindTask {
				t.Fatalf("vcpu %d record %d: chunk %d's marker is followed by kind %d, want its task", v, i, prev.Insn.Chunk, r.Kind)
			}
			if r.Kind == trace.KindTask {
				k := r.Task
				if k.PID < 0 || k.Comm == "" || k.Addr < 0xffff800000000000 {
					t.Fatalf("vcpu %d record %d: task %+v was not read", v, i, k)
				}
				seen[fmt.Sprintf("vcpu%d %s", v, k)] = true
				process = process || k.PID > 0
				other := task.Task.Addr != k.Addr
				task = r
				if prev.Kind == trace.KindInsn && other {
					switches++
					if in := prev.Insn; in.RIP < swFrom || in.RIP >= swTo {
						t.Errorf("vcpu %d record %d: task %s named after the instruction at %#x, outside __switch_to (%#x-%#x)", v, i, k, in.RIP, swFrom, swTo)
					}
				}
			}
			prev = r
		}
	}
	if !process {
		t.Errorf("no process (pid > 0) in the trace: %v", seen)
	}
	b, err := os.ReadFile(filepath.Join(dir, trace.WhoRanFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]uint64, len(recs))
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[3:] {
		f := strings.Fields(l)
		var vc int
		var n uint64
		if len(f) < 8 {
			t.Fatalf("%s: line %q", trace.WhoRanFile, l)
		}
		fmt.Sscan(f[0], &vc)
		fmt.Sscan(f[len(f)-2], &n)
		if vc >= 0 && vc < len(sum) {
			sum[vc] += n
		}
	}
	for v := range recs {
		if want := uint64(len(insns(recs[v]))); sum[v] != want {
			t.Errorf("vcpu %d: %s counts %d instructions, the trace holds %d", v, trace.WhoRanFile, sum[v], want)
		}
	}
	t.Logf("who ran: %d task switches seen within chunks; tasks %v", switches, seen)
}

// kernelSymbolRange is a function's address range in the guest kernel's
// System.map: from its address to the next higher symbol's.
func kernelSymbolRange(t *testing.T, name string) (from, to uint64) {
	t.Helper()
	from = kernelSymbol(t, name)
	b, err := os.ReadFile(filepath.Join(buildDir, "System.map"))
	if err != nil {
		t.Fatal(err)
	}
	to = ^uint64(0)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		var a uint64
		if len(f) == 3 && f[2] != name {
			if _, err := fmt.Sscanf(f[0], "%x", &a); err == nil && a > from && a < to {
				to = a
			}
		}
	}
	return from, to
}

// checkVCPUFilter checks a text trace of vCPU 1 alone: vCPU 0's file
// holds only its end record, vCPU 1's as many instruction lines as the
// unfiltered native trace.
func checkVCPUFilter(t *testing.T, dir string, want int) {
	t.Helper()
	b0, err := os.ReadFile(filepath.Join(dir, trace.FileName(trace.FormatText, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if string(b0) != "E instructions=0\n" {
		t.Errorf("--vcpu 1: vcpu 0's trace is %q, want only the end record", tail(string(b0)))
	}
	b1, err := os.ReadFile(filepath.Join(dir, trace.FileName(trace.FormatText, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, l := range strings.Split(string(b1), "\n") {
		if strings.HasPrefix(l, "I ") {
			got++
		}
	}
	if got != want || !strings.HasSuffix(string(b1), fmt.Sprintf("E instructions=%d\n", want)) {
		t.Errorf("--vcpu 1: %d instruction lines, the unfiltered trace has %d", got, want)
	}
}

// checkChampSim reads the ChampSim trace back: 64-byte records in
// input_instr's field order, one per native instruction with the same ip,
// branches with taken and not-taken flags.
func checkChampSim(t *testing.T, dir string, native [][]trace.Record) {
	t.Helper()
	for v := range native {
		b, err := os.ReadFile(filepath.Join(dir, trace.FileName(trace.FormatChampSim, v)))
		if err != nil {
			t.Fatal(err)
		}
		want := insns(native[v])
		if len(b) != len(want)*trace.ChampSimRecordSize {
			t.Fatalf("vcpu %d: ChampSim trace is %d bytes, want %d records of %d", v, len(b), len(want), trace.ChampSimRecordSize)
		}
		taken, notTaken := 0, 0
		for i := range want {
			r := trace.UnmarshalChampSim(b[i*trace.ChampSimRecordSize:])
			if r.IP != want[i].RIP {
				t.Fatalf("vcpu %d record %d: ip %#x, native trace has %#x", v, i, r.IP, want[i].RIP)
			}
			switch {
			case r.IsBranch == 1 && r.Taken == 1:
				taken++
			case r.IsBranch == 1:
				notTaken++
			case r.Taken != 0:
				t.Fatalf("vcpu %d record %d: taken without a branch", v, i)
			}
			if r.IsBranch == 1 && r.DestRegs[0] != 26 {
				t.Fatalf("vcpu %d record %d: a branch that does not write REG_INSTRUCTION_POINTER: %+v", v, i, r)
			}
		}
		if taken == 0 || notTaken == 0 {
			t.Errorf("vcpu %d: %d taken and %d not-taken branches", v, taken, notTaken)
		}
	}
}

// checkDivergedTrace makes a recording diverge (a chunk ends one exit
// early, as TestReplayDetectsDivergence does): trace fails where replay
// does (the same chunk, vCPU and kind of divergence), and leaves neither
// the directory nor its partial copy.
func checkDivergedTrace(t *testing.T, rec, ckpt string) {
	t.Helper()
	bad := divergedCopy(t, rec)
	p := samsara(t, resumeTimeout, "replay", bad, "--from-checkpoint", ckpt)
	dir := filepath.Join(t.TempDir(), "trace")
	q := samsara(t, resumeTimeout, "trace", bad, "--from-checkpoint", ckpt, "-o", dir, "--chunks", traceChunks)
	// The same chunk, vCPU and kind of divergence; what each saw there
	// differs in detail (a single-stepped trace knows the instruction a
	// plain run went past).
	div := regexp.MustCompile(`DIVERGED: replay diverged at chunk \d+ \(vcpu \d+\): [^:]+`)
	want, got := div.FindString(p.stderr), div.FindString(q.stderr)
	if p.status == 0 || want == "" || q.status == 0 || got != want {
		t.Errorf("diverged recording: replay status %d %q, trace status %d %q\ntrace stderr:\n%s", p.status, want, q.status, got, tail(q.stderr))
	}
	for _, d := range []string{dir, dir + ".partial"} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("a failed trace left %s behind", d)
		}
	}
}

// TestTraceMemoryConsistency traces a kernel-only window (--kernel-only) with the values
// of every access (--values) and checks, across both vCPUs in commit
// order, that every load reads the last store to its bytes in the trace
// or the window's start value (trace.CheckConsistency).
func TestTraceMemoryConsistency(t *testing.T) {
	requireKVM(t)
	ckpt := bootedCheckpoint(t, 2)
	_, rec := recordAndReplayN(t, 0, 2, ckpt, nil, "threads2", "1000")
	recs, _ := readNativeTrace(t, runTrace(t, rec, ckpt, "--values", "--kernel-only"), 2)
	loads, bad := trace.CheckConsistency(recs)
	for i, m := range bad {
		if i < 5 {
			t.Error(m)
		}
	}
	t.Logf("%d loads checked in chunks %s, %d inconsistent", loads, traceChunks, len(bad))
	if loads == 0 {
		t.Error("no load with a value in the trace")
	}
}

// onPVM reports whether /dev/kvm is PVM's (kvm_pvm loaded): guest kernel
// code is emulated there and guest user code cannot be single-stepped.
func onPVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

// TestTraceUserSum is issue 16's acceptance test for user code: sumarr,
// recorded on 2 vCPUs from a booted checkpoint and traced whole, fills an
// array of N longs and sums it with one 8-byte load per element, then
// makes K write(2) calls through one SYSCALL instruction. Its trace must
// hold exactly one user-mode load of each element (N in all, at the base
// the program printed plus 8i) and K executions of that SYSCALL, and a
// second expansion must be byte-identical (so its instruction count is
// the single-stepped count, twice).
// userTraceTimeout bounds one expansion of TestTraceUserSum's whole
// recording, user code single-stepped: in the emulated SVM host, where
// every step goes through QEMU's TCG, one took longer than resumeTimeout's
// 3 minutes (2026-12-06, 2 host CPUs).
const userTraceTimeout = 10 * time.Minute

func TestTraceUserSum(t *testing.T) {
	requireKVM(t)
	if onPVM() {
		t.Skip("needs hardware virtualization: under PVM a single step of guest user code goes to the guest (shared/PLATFORM.md), so user code is never traced there; the emulated SVM host runs this test (make test-hostvm)")
	}
	const n, k = 1000, 3
	ckpt := bootedCheckpoint(t, 2)
	out, rec := recordAndReplayN(t, 1, 2, ckpt, nil, "sumarr", fmt.Sprint(n), fmt.Sprint(k))
	var base, sys uint64
	var gotN, gotK int
	m := regexp.MustCompile(`sumarr: base=0x([0-9a-f]+) n=(\d+) syscall=0x([0-9a-f]+) k=(\d+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "sumarr: sum=499500 ok") {
		t.Fatalf("sumarr printed:\n%s", out)
	}
	fmt.Sscanf(m[1]+" "+m[2]+" "+m[3]+" "+m[4], "%x %d %x %d", &base, &gotN, &sys, &gotK)
	if gotN != n || gotK != k {
		t.Fatalf("sumarr says n=%d k=%d, asked for %d and %d", gotN, gotK, n, k)
	}
	traceAll := func() string {
		dir := filepath.Join(t.TempDir(), "trace")
		r := samsara(t, userTraceTimeout, "trace", rec, "--from-checkpoint", ckpt, "-o", dir)
		if r.status != 0 || !strings.Contains(r.stderr, "trace matched the recording") {
			t.Fatalf("trace: status %d\nstderr:\n%s", r.status, tail(r.stderr))
		}
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, "trace matched the recording") {
				t.Logf("%s", l)
			}
		}
		return dir
	}
	recs, raw := readNativeTrace(t, traceAll(), 2)
	_, raw2 := readNativeTrace(t, traceAll(), 2)
	loads := map[uint64]int{}
	syscalls, user, total := 0, 0, 0
	for v := range 2 {
		if !bytes.Equal(raw[v], raw2[v]) {
			t.Errorf("vcpu %d: two expansions differ (%d and %d bytes)", v, len(raw[v]), len(raw2[v]))
		}
		var task trace.Task
		for _, r := range recs[v] {
			if r.Kind == trace.KindTask {
				task = r.Task
			}
			if r.Kind != trace.KindInsn {
				continue
			}
			in := r.Insn
			total++
			if in.CPL != 3 {
				continue
			}
			user++
			if in.RIP == sys && bytes.Equal(in.Bytes, []byte{0x0f, 0x05}) {
				syscalls++
				// Who ran: the write calls are sumarr's.
				if task.Comm != "sumarr" {
					t.Errorf("vcpu %d: the SYSCALL at %d.%d ran in task %s, want sumarr's", v, in.Chunk, in.Index, task)
				}
			}
			for _, a := range in.Mem {
				if a.Flags&trace.AccessRead != 0 && a.Flags&trace.AccessWrite == 0 && a.VA >= base && a.VA < base+8*n {
					if a.Size != 8 || (a.VA-base)%8 != 0 {
						t.Errorf("a load of %d bytes at base+%d: sumarr loads whole elements", a.Size, a.VA-base)
					}
					loads[a.VA]++
				}
			}
		}
	}
	t.Logf("%d instructions traced, %d of them in user mode", total, user)
	if user == 0 {
		t.Fatal("no user-mode instruction in the trace")
	}
	for i := uint64(0); i < n; i++ {
		if c := loads[base+8*i]; c != 1 {
			t.Errorf("element %d (%#x) loaded %d times in user mode, want once", i, base+8*i, c)
			break
		}
	}
	if len(loads) != n {
		t.Errorf("%d distinct elements loaded, want %d", len(loads), n)
	}
	if syscalls != k {
		t.Errorf("the SYSCALL at %#x ran %d times in the trace, want %d", sys, syscalls, k)
	}
}

// TestTraceDevices traces a recording of `cat` reading a file from a
// virtio disk (issue 16's events that are not instructions): the file's
// bytes reach guest memory in a DMA record, and leave through the
// console's port writes (the UART's transmit register, port 0x3f8, one
// OUT per byte) in the order the trace holds them; no frame saved a TF of
// the tracer's, every interrupt's saved interrupts enabled, and one
// delivered at a chunk's start saved the RIP the chunk started at; and
// every load (the whole recording's kernel code, --values) reads the last
// store, DMA or frame word the trace holds for its bytes
// (trace.CheckConsistency).
func TestTraceDevices(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	// Unique text, longer than one console line.
	text := fmt.Sprintf("samsara trace devices %d: the quick brown fox jumps over the lazy dog\n", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(content, "hello.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("../guest-images/build-disk.sh", img, content).CombinedOutput(); err != nil {
		t.Fatalf("build-disk.sh: %v\n%s", err, out)
	}
	ckpt, _ := diskCheckpoint(t, 2, img, "true")
	out, rec := recordAndReplay(t, 2, ckpt, []string{"--vm", img}, "cat", "/mnt/hello.txt")
	if !strings.Contains(out, strings.TrimSpace(text)) {
		t.Fatalf("cat printed:\n%s", out)
	}
	trDir := filepath.Join(t.TempDir(), "trace")
	r := samsara(t, resumeTimeout, "trace", rec, "--from-checkpoint", ckpt, "--vm", img, "-o", trDir, "--values", "--kernel-only")
	if r.status != 0 || !strings.Contains(r.stderr, "trace matched the recording") {
		t.Fatalf("trace: status %d\nstderr:\n%s", r.status, tail(r.stderr))
	}
	recs, _ := readNativeTrace(t, trDir, 2)

	type at struct {
		chunk uint32
		index uint64
		out   []byte
	}
	var console []at
	dma, frames := false, 0
	for v := range recs {
		chunkRIP := map[uint32]uint64{}
		var prev trace.Record
		for _, rc := range recs[v] {
			interrupt := prev.Kind == trace.KindInject
			prev = rc
			switch rc.Kind {
			case trace.KindChunk:
				chunkRIP[rc.Insn.Chunk] = rc.Insn.RIP
			case trace.KindDevice:
				if d := rc.Device; !d.MMIO && d.Write && d.Addr == 0x3f8 {
					console = append(console, at{rc.Insn.Chunk, rc.Insn.Index, d.Data})
				}
			case trace.KindDMA:
				dma = dma || bytes.Contains(rc.DMA.Data, []byte(text))
			case trace.KindFrame:
				frames++
				f := rc.Frame
				if f.RFLAGS&(1<<8) != 0 || interrupt && f.RFLAGS&(1<<9) == 0 {
					t.Errorf("vcpu %d %d.%d: frame %+v saved RFLAGS %#x (want TF clear, and IF set for an interrupt)", v, rc.Insn.Chunk, rc.Insn.Index, f, f.RFLAGS)
				}
				if want := chunkRIP[rc.Insn.Chunk]; interrupt && rc.Insn.Index == 0 && f.RIP != want {
					t.Errorf("vcpu %d chunk %d: an interrupt delivered at its start saved RIP %#x, the chunk starts at %#x", v, rc.Insn.Chunk, f.RIP, want)
				}
			}
		}
	}
	if !dma {
		t.Error("no DMA record holds the file's bytes")
	}
	if frames == 0 {
		t.Error("no interrupt frame in the trace")
	}
	sort.Slice(console, func(i, j int) bool {
		a, b := console[i], console[j]
		return a.chunk < b.chunk || a.chunk == b.chunk && a.index < b.index
	})
	var sent []byte
	for _, c := range console {
		sent = append(sent, c.out...)
	}
	if !bytes.Contains(sent, []byte(strings.TrimSpace(text))) {
		t.Errorf("the console's port writes, in trace order, do not hold the file's text; they sent %d bytes: %q", len(sent), sent[max(0, len(sent)-300):])
	}
	loads, bad := trace.CheckConsistency(recs)
	for i, m := range bad {
		if i < 5 {
			t.Error(m)
		}
	}
	if loads == 0 {
		t.Error("no load with a value in the trace")
	}
	t.Logf("%d console bytes, %d frames, %d loads consistent with the stores, DMA and frames before them; %s", len(sent), frames, loads-len(bad), lineWith(r.stderr, "events:"))
}

// lineWith is the last line of s containing sub.
func lineWith(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
