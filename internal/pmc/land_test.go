package pmc

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/hex"
	"errors"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// traceInsn is one retired instruction of a recorded trace.
type traceInsn struct {
	rip  uint64
	cond bool // a conditional branch: what the PMU backend counts
}

// condOps are the instructions the guest branch events count: the
// conditional jumps on flags, on RCX, and the LOOPs.
var condOps = map[x86asm.Op]bool{
	x86asm.JA: true, x86asm.JAE: true, x86asm.JB: true, x86asm.JBE: true, x86asm.JE: true, x86asm.JG: true,
	x86asm.JGE: true, x86asm.JL: true, x86asm.JLE: true, x86asm.JNE: true, x86asm.JNO: true, x86asm.JNP: true,
	x86asm.JNS: true, x86asm.JO: true, x86asm.JP: true, x86asm.JS: true, x86asm.JCXZ: true, x86asm.JECXZ: true,
	x86asm.JRCXZ: true, x86asm.LOOP: true, x86asm.LOOPE: true, x86asm.LOOPNE: true,
}

// recordedTrace is testdata/trace.txt.gz, embedded: the test binary also
// runs inside the emulated host, without the source tree.
//
//go:embed testdata/trace.txt.gz
var recordedTrace []byte

// loadTrace reads recordedTrace: segments (chunks) of retired
// instructions that `samsara trace` single-stepped from a recording.
func loadTrace(t *testing.T) [][]traceInsn {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(recordedTrace))
	if err != nil {
		t.Fatal(err)
	}
	var segs [][]traceInsn
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case line == "C":
			segs = append(segs, nil)
		default:
			f := strings.Fields(line)
			rip, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			code, err := hex.DecodeString(f[1])
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			inst, err := x86asm.Decode(code, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			segs[len(segs)-1] = append(segs[len(segs)-1], traceInsn{rip: rip, cond: condOps[inst.Op]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return segs
}

// simVCPU replays one trace segment as a vCPU would run it: it stands
// before instruction pos; the segment's end is its exit. Its overflow
// interrupt comes up to skid branches late (from rng), and its
// registers are unique per instruction executed (as a real vCPU's
// nearly always are: a REP iteration differs in RCX).
type simVCPU struct {
	insns  []traceInsn
	before []uint64 // before[i]: branches retired before instruction i
	pos    int
	skid   int
	rng    *rand.Rand
	runs   int // entries (runs and steps), for the cost check
}

func newSim(insns []traceInsn, skid int, seed int64) *simVCPU {
	s := &simVCPU{insns: insns, before: make([]uint64, len(insns)+1), skid: skid, rng: rand.New(rand.NewSource(seed))}
	for i, in := range insns {
		s.before[i+1] = s.before[i]
		if in.cond {
			s.before[i+1]++
		}
	}
	return s
}

func (s *simVCPU) Branches() (uint64, error) { return s.before[s.pos], nil }

func (s *simVCPU) At() (uint64, uint64, error) {
	if s.pos == len(s.insns) {
		return 0, ^uint64(0), nil
	}
	return s.insns[s.pos].rip, uint64(s.pos) * 0x9E3779B97F4A7C15, nil
}

func (s *simVCPU) RunOverflow(n uint64) (Stop, error) {
	s.runs++
	want := s.before[s.pos] + n + uint64(s.rng.Intn(s.skid+1))
	for s.pos < len(s.insns) && s.before[s.pos+1] <= want {
		s.pos++
		if s.before[s.pos] == want {
			// Interrupted somewhere before the next branch retires.
			for s.pos < len(s.insns) && !s.insns[s.pos].cond && s.rng.Intn(3) != 0 {
				s.pos++
			}
			break
		}
	}
	if s.pos == len(s.insns) {
		return StopExited, nil
	}
	return StopInterrupted, nil
}

func (s *simVCPU) RunToBreakpoint(rip uint64) (Stop, error) {
	s.runs++
	for ; s.pos < len(s.insns); s.pos++ {
		if s.insns[s.pos].rip == rip {
			return StopBreakpoint, nil
		}
	}
	return StopExited, nil
}

func (s *simVCPU) Step() (Stop, error) {
	s.runs++
	if s.pos++; s.pos >= len(s.insns) {
		return StopExited, nil
	}
	return StopStepped, nil
}

// TestLandOnRecordedTraces lands on every instruction of the recorded
// segments from each segment's start, with the overflow's skid drawn up to
// the margin: every landing must stand exactly at its instruction.
func TestLandOnRecordedTraces(t *testing.T) {
	segs := loadTrace(t)
	total, branches := 0, 0
	for _, seg := range segs {
		for _, in := range seg {
			if in.cond {
				branches++
			}
		}
		total += len(seg)
	}
	if len(segs) < 2 || branches == 0 {
		t.Fatalf("trace: %d segments, %d conditional branches: not the recorded traces", len(segs), branches)
	}
	t.Logf("%d segments, %d instructions, %d conditional branches", len(segs), total, branches)
	for _, margin := range []uint64{0, 5, SkidMarginIntel} {
		runs := 0
		for si, seg := range segs {
			for i := range seg {
				sim := newSim(seg, int(margin), int64(i))
				pre := newSim(seg, 0, 0)
				pre.pos = i
				target := Target{Branches: pre.before[i]}
				target.RIP, target.Regs, _ = pre.At()
				if err := Land(sim, target, margin, len(seg)); err != nil {
					t.Fatalf("margin %d, segment %d, instruction %d (%v): %v", margin, si, i, target, err)
				}
				if sim.pos != i {
					t.Fatalf("margin %d, segment %d: landed at instruction %d, want %d", margin, si, sim.pos, i)
				}
				runs += sim.runs
			}
		}
		t.Logf("skid margin %d: %.1f entries per landing", margin, float64(runs)/float64(total))
	}
}

// TestLandSkidBeyondMargin: an overflow later than the margin (rr flags
// AMD's skid as unbounded in rare cases) must end in an error, never in
// a landing at another instruction: ErrPassed when it stopped past the
// point's count, ErrExitFirst when it stopped past the point within the
// point's count (the breakpoint never comes again before the exit).
func TestLandSkidBeyondMargin(t *testing.T) {
	segs := loadTrace(t)
	passed := 0
	for si, seg := range segs {
		for i := range seg {
			sim := newSim(seg, 40, int64(i)) // skid up to 40, margin 2
			pre := newSim(seg, 0, 0)
			pre.pos = i
			target := Target{Branches: pre.before[i]}
			target.RIP, target.Regs, _ = pre.At()
			err := Land(sim, target, 2, len(seg))
			switch {
			case errors.Is(err, ErrPassed), errors.Is(err, ErrExitFirst):
				passed++
			case err != nil:
				t.Fatalf("segment %d, instruction %d: %v", si, i, err)
			case sim.pos != i:
				t.Fatalf("segment %d: landed at instruction %d, want %d", si, sim.pos, i)
			}
		}
	}
	if passed == 0 {
		t.Fatal("no landing saw the skid beyond its margin: the test does not exercise it")
	}
	t.Logf("%d landings passed their point and said so", passed)
}

// TestLandExitFirst: a point beyond the segment's exit (a replay that
// diverged) ends in ErrExitFirst, and one already passed in ErrPassed.
func TestLandExitFirst(t *testing.T) {
	seg := loadTrace(t)[0]
	sim := newSim(seg, 0, 1)
	last := sim.before[len(seg)]
	err := Land(sim, Target{Branches: last + 1000, RIP: seg[0].rip}, SkidMarginIntel, 100)
	if !errors.Is(err, ErrExitFirst) {
		t.Errorf("a point past the exit: %v, want ErrExitFirst", err)
	}
	sim = newSim(seg, 0, 1)
	sim.pos = len(seg) - 1
	err = Land(sim, Target{Branches: 0, RIP: seg[0].rip}, SkidMarginIntel, 100)
	if last > 0 && !errors.Is(err, ErrPassed) {
		t.Errorf("a point already passed: %v, want ErrPassed", err)
	}
	var le *LandError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "breakpoint hits") {
		t.Errorf("error %v does not say where the vCPU stands", err)
	}
}
