package trace

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// identity maps every virtual address to itself plus 1<<40, so a test sees
// the translation was applied.
func identity(va uint64) (uint64, bool) { return va + 1<<40, true }

// TestDecodeAccesses: each operand's address, size and direction; a bit
// test with a register bit offset reaches the operand floor(offset/bits)
// operands away (backwards for a negative offset), with an immediate
// offset the operand encoded.
func TestDecodeAccesses(t *testing.T) {
	r := &Regs{RIP: 0x1000}
	r.GPR[7] = 0x5000              // RDI
	r.GPR[4] = 0x8000              // RSP
	r.GPR[6] = 70                  // RSI: bit 6 of the second quadword
	r.GPR[0] = ^uint64(0)          // RAX: -1, bit 63 of the quadword before
	r.GPR[2] = 0xffffffff_00000021 // RDX: EDX 33, bit 1 of the second dword
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
		{"lock bts [rdi], rsi", []byte{0xf0, 0x48, 0x0f, 0xab, 0x37}, 0x5008, 8, AccessRead | AccessWrite},
		{"btr [rdi], rax", []byte{0x48, 0x0f, 0xb3, 0x07}, 0x4ff8, 8, AccessRead | AccessWrite},
		{"bt [rdi], edx", []byte{0x0f, 0xa3, 0x17}, 0x5004, 4, AccessRead},
		{"bts qword [rdi], 70", []byte{0x48, 0x0f, 0xba, 0x2f, 70}, 0x5000, 8, AccessRead | AccessWrite},
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

// TestDeviceEventsRoundTrip writes a device access, a DMA and an
// interrupt frame in the native and the text format and reads them back.
func TestDeviceEventsRoundTrip(t *testing.T) {
	dev := Device{Write: true, Addr: 0x3f8, Size: 1, Count: 1, Data: []byte("A")}
	mmio := Device{MMIO: true, Addr: 0xfee000b0, Size: 4, Count: 1, Data: []byte{1, 2, 3, 4}}
	dma := DMA{PA: 0x3a21000, Data: bytes.Repeat([]byte{0xab}, 4096)}
	frame := Frame{VA: 0xffffc90000003f58, PA: 0x3f58, RIP: 0xffffffff81001234, CS: 0x10, RFLAGS: 0x246, RSP: 0xffffc90000003f80, SS: 0x18}
	fault := Frame{VA: 0xffffc90000007f50, PA: 0x7f50, HasError: true, Error: 6, RIP: 0x401000, CS: 0x33, RFLAGS: 0x202, RSP: 0x7ffc0000, SS: 0x2b}
	write := func(format string) string {
		dir := filepath.Join(t.TempDir(), "tr")
		s, err := Create(dir, format, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{s.Chunk(0, 1, 0xffffffff81000000), s.Device(0, 1, 4, dev), s.Device(0, 1, 5, mmio),
			s.DMA(0, 1, 5, dma), s.Frame(0, 1, 6, frame), s.Frame(0, 1, 7, fault), s.Finish()} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	data, err := os.ReadFile(filepath.Join(write(FormatNative), FileName(FormatNative, 0)))
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := ReadNative(bytes.NewReader(data))
	if err != nil || len(recs) != 7 {
		t.Fatalf("read back %d records: %v", len(recs), err)
	}
	if r := recs[1]; r.Kind != KindDevice || r.Insn.Index != 4 || !reflect.DeepEqual(r.Device, dev) {
		t.Errorf("port write read back as %+v", r)
	}
	if r := recs[2]; r.Kind != KindDevice || !reflect.DeepEqual(r.Device, mmio) {
		t.Errorf("MMIO read read back as %+v", r)
	}
	if r := recs[3]; r.Kind != KindDMA || !reflect.DeepEqual(r.DMA, dma) {
		t.Errorf("DMA read back as %x bytes at %#x", len(r.DMA.Data), r.DMA.PA)
	}
	if r := recs[4]; r.Kind != KindFrame || r.Frame != frame || r.Insn.Index != 6 {
		t.Errorf("frame read back as %+v", r.Frame)
	}
	if r := recs[5]; r.Frame != fault || len(r.Frame.Words()) != 6 || r.Frame.Words()[0] != 6 {
		t.Errorf("frame with an error code read back as %+v", r.Frame)
	}
	text, err := os.ReadFile(filepath.Join(write(FormatText), FileName(FormatText, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"D 1.0.4 port out addr=3f8 size=1 count=1 data=41\n", "D 1.0.5 mmio read addr=fee000b0 size=4 count=1 data=01020304\n",
		"M 1.0.5 dma pa=3a21000 len=4096 data=abab", "P 1.0.6 frame va=ffffc90000003f58 pa=3f58 rip=ffffffff81001234 cs=10 rflags=246 rsp=ffffc90000003f80 ss=18\n",
		"P 1.0.7 frame va=ffffc90000007f50 pa=7f50 error=6 rip=401000"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("text trace lacks %q:\n%.600s", want, text)
		}
	}
}

// TestConsistencyDMAAndFrames: a DMA's bytes and a frame's words are the
// last stores a later load must read; a device access changes nothing.
func TestConsistencyDMAAndFrames(t *testing.T) {
	load := func(idx, pa, val uint64) Record {
		return Record{Kind: KindInsn, Insn: Insn{Chunk: 1, Index: idx, Mem: []Access{{PA: pa, Size: 8, Flags: AccessRead | AccessValue, Value: val}}}}
	}
	frame := Frame{VA: 0xffffc90000003f58, PA: 0x3f58, RIP: 0x1234, CS: 0x10, RFLAGS: 0x246, RSP: 0x3f80, SS: 0x18}
	recs := []Record{
		load(0, 0x1000, 7),
		{Kind: KindDevice, Insn: Insn{Chunk: 1, Index: 1}, Device: Device{MMIO: true, Write: true, Addr: 0xd0000, Size: 4, Count: 1, Data: make([]byte, 4)}},
		{Kind: KindDMA, Insn: Insn{Chunk: 1, Index: 1}, DMA: DMA{PA: 0x1000, Data: []byte{9, 0, 0, 0, 0, 0, 0, 0}}},
		load(1, 0x1000, 9),
		{Kind: KindFrame, Insn: Insn{Chunk: 1, Index: 2}, Frame: frame},
		load(2, 0x3f58, 0x1234),
		load(3, 0x3f68, 0x246),
	}
	if n, bad := CheckConsistency([][]Record{recs}); n != 4 || len(bad) != 0 {
		t.Fatalf("%d loads checked, mismatches %v; want 4 and none", n, bad)
	}
	recs[3] = load(1, 0x1000, 7) // the value from before the DMA
	recs[6] = load(3, 0x3f68, 0x202)
	if _, bad := CheckConsistency([][]Record{recs}); len(bad) != 2 {
		t.Fatalf("mismatches %v; want a stale read after the DMA and a wrong RFLAGS word", bad)
	}
}
