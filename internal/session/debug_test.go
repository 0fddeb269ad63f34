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
		{hwBreak{kind: gdbstub.WatchAccess, addr: 0xffff888000001000, size: 4}, false, true},
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
