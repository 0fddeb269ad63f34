package session

import (
	"testing"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
)

func TestPositionOrder(t *testing.T) {
	ps := []Position{
		{Chunk: 0, Exits: -1},
		{Chunk: 0, Exits: 0, Insns: 0},
		{Chunk: 0, Exits: 0, Insns: 5},
		{Chunk: 0, Exits: 1, Insns: 0},
		{Chunk: 1, Exits: -1},
		{Chunk: 1, Exits: 0, Insns: 3},
	}
	for i := range ps {
		for j := range ps {
			if got := ps[i].before(ps[j]); got != (i < j) {
				t.Errorf("%v before %v = %v", ps[i], ps[j], got)
			}
		}
	}
	if s := (Position{Chunk: 4, Exits: 2, Insns: 17}).String(); s != "4.2.17" {
		t.Errorf("String: %q", s)
	}
	if s := (Position{Chunk: 4, Exits: -1}).String(); s != "4" {
		t.Errorf("String before a chunk: %q", s)
	}
}

// TestArmBreakpoints checks the DR7 encoding (Intel SDM vol. 3, 17.2.4).
func TestArmBreakpoints(t *testing.T) {
	bps := []hwBreak{
		{kind: gdbstub.BreakHW, addr: 0xffffffff81000000, size: 1},
		{kind: gdbstub.WatchWrite, addr: 0xffff888000001000, size: 8},
		{kind: gdbstub.WatchAccess, addr: 0xffff888000002000, size: 4},
		{kind: gdbstub.BreakSW, addr: 0xffffffff81000010, size: 1},
	}
	ctl, dr := armBreakpoints(bps, false, false)
	// L0..L3 (bits 0, 2, 4, 6); DR1 write (RW1=01 at 20) len 8 (LEN1=10
	// at 22); DR2 read/write (RW2=11 at 24) len 4 (LEN2=11 at 26).
	want := uint64(1 | 1<<2 | 1<<4 | 1<<6 | 1<<20 | 2<<22 | 3<<24 | 3<<26)
	if dr[7] != want || ctl == 0 || dr[0] != bps[0].addr || dr[3] != bps[3].addr {
		t.Errorf("dr7 %#x, want %#x; dr %x; control %#x", dr[7], want, dr, ctl)
	}
	// Stepping over a breakpoint leaves the execution ones out; software
	// watchpoints leave the watch ones out.
	if _, dr := armBreakpoints(bps, true, true); dr[7] != 0 {
		t.Errorf("no exec, soft watch: dr7 %#x", dr[7])
	}
	if ctl, _ := armBreakpoints(nil, false, false); ctl != 0 {
		t.Errorf("nothing armed: control %#x", ctl)
	}
}

func TestCheckBreakpoint(t *testing.T) {
	for _, c := range []struct {
		b   hwBreak
		pvm bool
		ok  bool
	}{
		{hwBreak{kind: gdbstub.BreakHW, addr: 0xffffffff81000000, size: 1}, true, true},
		{hwBreak{kind: gdbstub.BreakSW, addr: 0x401000, size: 1}, true, false},
		{hwBreak{kind: gdbstub.BreakSW, addr: 0x401000, size: 1}, false, true},
		{hwBreak{kind: gdbstub.WatchWrite, addr: 0xffff888000001000, size: 8}, true, true},
		{hwBreak{kind: gdbstub.WatchWrite, addr: 0xffff888000001004, size: 8}, true, false},
		{hwBreak{kind: gdbstub.WatchWrite, addr: 0xffff888000001000, size: 3}, true, false},
		{hwBreak{kind: gdbstub.WatchRead, addr: 0xffff888000001000, size: 4}, true, false},
		// Without a counter watchpoints are page traps: writes only.
		{hwBreak{kind: gdbstub.WatchAccess, addr: 0xffff888000001000, size: 4}, false, false},
		{hwBreak{kind: gdbstub.WatchWrite, addr: 0xffff888000001000, size: 4}, false, true},
	} {
		if err := checkBreakpoint(c.b, c.pvm); (err == nil) != c.ok {
			t.Errorf("%+v pvm=%v: %v, want ok=%v", c.b, c.pvm, err, c.ok)
		}
	}
}

func TestIsPushf(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{[]byte{0x9C}, true},
		{[]byte{0x66, 0x9C}, true},
		{[]byte{0x48, 0x9C}, true},
		{[]byte{0x9D}, false}, // POPF
		{[]byte{0x50}, false}, // PUSH RAX
		{nil, false},
	} {
		if got := isPushf(c.b); got != c.want {
			t.Errorf("isPushf(% x) = %v", c.b, got)
		}
	}
}

func TestIsSyscall(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{[]byte{0x0F, 0x05}, true},
		{[]byte{0x48, 0x0F, 0x05}, true},
		{[]byte{0x0F, 0x34}, false}, // SYSENTER: not what 64-bit Linux uses
		{[]byte{0x9C}, false},
		{[]byte{0x0F}, false},
		{nil, false},
	} {
		if got := isSyscall(c.b); got != c.want {
			t.Errorf("isSyscall(% x) = %v, want %v", c.b, got, c.want)
		}
	}
}

// Without a counter (page breakpoints) every point of one stretch between
// exits has the same count: only the target itself is reached there, and
// the stretches before and after it order as with a counter.
func TestReachedWithoutCounter(t *testing.T) {
	target := Position{Chunk: 3, VCPU: 1, Exits: 2, Insns: 5, RIP: 0xffffffff81001000, Regs: 7}
	h := &debugHook{cmd: debugCmd{mode: modeCollect, target: target}, pages: true}
	for _, c := range []struct {
		pos  Position
		want bool
	}{
		{target, true},
		{Position{Chunk: 3, Exits: 2, Insns: 5, RIP: 0xffffffff81001000, Regs: 8}, false},
		{Position{Chunk: 3, Exits: 2, Insns: 5, RIP: 0xffffffff81002000, Regs: 7}, false},
		{Position{Chunk: 3, Exits: 1, Insns: 9}, false},
		{Position{Chunk: 3, Exits: 3}, true},
		{Position{Chunk: 2, Exits: 5}, false},
		{Position{Chunk: 4, Exits: -1}, true},
	} {
		if got := h.reached(c.pos); got != c.want {
			t.Errorf("reached(%+v) = %v, want %v", c.pos, got, c.want)
		}
	}
	// With a counter, a later count in the same stretch is past it.
	h.pages = false
	if !h.reached(Position{Chunk: 3, Exits: 2, Insns: 5, RIP: 0xffffffff81002000}) {
		t.Error("with a counter, the target's count in its stretch is reached")
	}
}

// A breakpoint address keeps each page it translated to once, the newest
// maxPagesPerAddr of them.
func TestBPPagesKeepsEveryTranslation(t *testing.T) {
	p := newBPPages()
	p.note(0x403000, 0x1c48000)
	p.note(0x403000, 0xf84e000)
	p.note(0x403000, 0x1c48000)
	if got := p.get(0x403000); len(got) != 2 || got[0] != 0x1c48000 || got[1] != 0xf84e000 {
		t.Fatalf("pages %#x, want the two translations once each", got)
	}
	for i := 0; i < maxPagesPerAddr; i++ {
		p.note(0x403000, uint64(0x100000+i*0x1000))
	}
	got := p.get(0x403000)
	if len(got) != maxPagesPerAddr || got[0] != 0x100000 || got[len(got)-1] != uint64(0x100000+(maxPagesPerAddr-1)*0x1000) {
		t.Fatalf("after %d more: %#x, want the newest %d", maxPagesPerAddr, got, maxPagesPerAddr)
	}
	if len(p.get(0xffffffff81000000)) != 0 {
		t.Fatal("an address never noted has pages")
	}
}
