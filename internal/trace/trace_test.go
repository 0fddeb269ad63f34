package trace

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// identity maps every virtual address to itself plus 1<<40, so a test sees
// the translation was applied.
func identity(va uint64) (uint64, bool) { return va + 1<<40, true }

func TestDecodeAccesses(t *testing.T) {
	r := &Regs{RIP: 0x1000}
	r.GPR[7] = 0x5000 // RDI
	r.GPR[4] = 0x8000 // RSP
	for _, tc := range []struct {
		name  string
		code  []byte
		va    uint64
		size  uint16
		flags uint8
	}{
		{"mov rax, [rdi+8]", []byte{0x48, 0x8b, 0x47, 0x08}, 0x5008, 8, AccessRead},
		{"mov [rdi], eax", []byte{0x89, 0x07}, 0x5000, 4, AccessWrite},
		{"add [rdi], rax", []byte{0x48, 0x01, 0x07}, 0x5000, 8, AccessRead | AccessWrite},
		{"push rbp", []byte{0x55}, 0x7ff8, 8, AccessWrite},
		{"mov rax, [rip+0x10]", []byte{0x48, 0x8b, 0x05, 0x10, 0, 0, 0}, 0x1017, 8, AccessRead},
	} {
		_, acc, err := Decode(tc.code, r, identity)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(acc) != 1 || acc[0].VA != tc.va || acc[0].PA != tc.va+1<<40 || acc[0].Size != tc.size || acc[0].Flags != tc.flags {
			t.Errorf("%s: accesses %+v, want one at %#x size %d flags %d", tc.name, acc, tc.va, tc.size, tc.flags)
		}
	}
	if _, acc, _ := Decode([]byte{0x48, 0x8d, 0x47, 0x08}, r, identity); len(acc) != 0 {
		t.Errorf("lea accesses memory: %+v", acc)
	}
}

func TestChampSimLayout(t *testing.T) {
	rec := ChampSimRecord{IP: 0x1122334455667788, IsBranch: 1, Taken: 1, DestRegs: [2]uint8{26, 6}, SrcRegs: [4]uint8{26, 6, 3, 4},
		DestMem: [2]uint64{0xa, 0xb}, SrcMem: [4]uint64{0xc, 0xd, 0xe, 0xf}}
	b := rec.Marshal(nil)
	if len(b) != ChampSimRecordSize {
		t.Fatalf("record is %d bytes, want %d", len(b), ChampSimRecordSize)
	}
	// ip at 0, is_branch 8, branch_taken 9, destination_registers 10-11,
	// source_registers 12-15, destination_memory 16-31, source_memory 32-63.
	if b[0] != 0x88 || b[8] != 1 || b[9] != 1 || b[10] != 26 || b[12] != 26 || b[15] != 4 || b[16] != 0xa || b[32] != 0xc || b[56] != 0xf {
		t.Errorf("field order: % x", b)
	}
	if got := UnmarshalChampSim(b); got != rec {
		t.Errorf("round trip: %+v, want %+v", got, rec)
	}
}

func TestNativeRoundTripAndEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tr")
	s, err := Create(dir, FormatNative, 1)
	if err != nil {
		t.Fatal(err)
	}
	in := &Insn{Chunk: 3, Index: 0, RIP: 0xffffffff81000000, Bytes: []byte{0x90}, Mem: []Access{{VA: 1, PA: 2, Size: 8, Flags: AccessRead}}}
	if err := s.Chunk(0, 3, in.RIP); err != nil {
		t.Fatal(err)
	}
	if err := s.Insn(0, in); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the trace directory exists before Finish")
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName(FormatNative, 0)))
	if err != nil {
		t.Fatal(err)
	}
	v, recs, err := ReadNative(bytes.NewReader(data))
	if err != nil || v != 0 || len(recs) != 3 || recs[1].Insn.RIP != in.RIP || recs[1].Insn.Mem[0] != in.Mem[0] || recs[2].Total != 1 {
		t.Fatalf("read back: vcpu %d, %+v, %v", v, recs, err)
	}
	// A trace without its end record is refused.
	s2, err := Create(dir+"2", FormatNative, 1)
	if err != nil {
		t.Fatal(err)
	}
	s2.Insn(0, in)
	s2.encs[0].close()
	data, _ = os.ReadFile(filepath.Join(dir+"2.partial", FileName(FormatNative, 0)))
	s2.Abort()
	if _, _, err := ReadNative(bytes.NewReader(data)); err == nil {
		t.Error("a trace without an end record was read as complete")
	}
}
