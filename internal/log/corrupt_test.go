package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wantCorrupt checks that err is a *CorruptError at offset and block.
func wantCorrupt(t *testing.T, err error, offset int64, block int) *CorruptError {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want a *CorruptError", err)
	}
	if ce.Offset != offset || ce.Block != block {
		t.Fatalf("err = %v, want offset %d block %d", err, offset, block)
	}
	return ce
}

// sameRecords is reflect.DeepEqual that treats nil and empty as equal.
func sameRecords(a, b []Record) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// multiBlock is a small recording of several blocks for the damage tests.
func multiBlock(t *testing.T) ([]Record, []byte, []blockSpan) {
	recs := append(allKinds(), randomRecords(40, 3)...)
	data := encodeLog(t, recs, WithBlockSize(200))
	sp := spans(t, data)
	if len(sp) < 6 {
		t.Fatalf("only %d blocks", len(sp))
	}
	return recs, data, sp
}

func TestTruncationAtEveryOffset(t *testing.T) {
	recs, data, sp := multiBlock(t)
	for cut := 0; cut < len(data); cut++ {
		h, got, err := ReadAll(bytes.NewReader(data[:cut]))
		switch {
		case cut == 0:
			if !errors.Is(err, ErrNotRecording) {
				t.Fatalf("cut %d: %v, want ErrNotRecording", cut, err)
			}
			continue
		case cut < preambleSize:
			wantCorrupt(t, err, 0, 0)
			continue
		}
		// The block that holds the cut, or starts at it.
		bi := 0
		for sp[bi].end <= cut {
			bi++
		}
		ce := wantCorrupt(t, err, int64(sp[bi].start), bi)
		if bi == 0 {
			if h != nil || got != nil {
				t.Fatalf("cut %d in the header: got a header or records", cut)
			}
			continue
		}
		n := 0
		for _, s := range sp[1:bi] {
			n += int(s.count)
		}
		if !sameRecords(got, recs[:n]) {
			t.Fatalf("cut %d (%v): got %d records, want the %d of the intact blocks", cut, ce, len(got), n)
		}
	}
}

func TestFlippedByteInEachBlock(t *testing.T) {
	recs, data, sp := multiBlock(t)
	n := 0 // records before block bi
	for bi, s := range sp[:len(sp)-1] {
		payload := s.start + frameHeaderSize
		for _, pos := range []int{payload, (payload + s.end) / 2, s.end - 1, s.start + 8} {
			bad := bytes.Clone(data)
			bad[pos] ^= 0x20
			_, got, err := ReadAll(bytes.NewReader(bad))
			ce := wantCorrupt(t, err, int64(s.start), bi)
			if !strings.Contains(ce.What, "CRC") {
				t.Errorf("block %d byte %d: %v, want a CRC mismatch", bi, pos, err)
			}
			if bi > 0 && !sameRecords(got, recs[:n]) {
				t.Fatalf("block %d: got %d records, want %d", bi, len(got), n)
			}
		}
		if bi > 0 { // the header block's count is not a record
			n += int(s.count)
		}
	}
}

func TestNotARecording(t *testing.T) {
	for _, in := range []string{"", "hello, world, this is text", "SAMSARA\x00CKP\x00\x01\x00\x00\x00", "\x7fELF"} {
		if _, err := Open(strings.NewReader(in)); !errors.Is(err, ErrNotRecording) {
			t.Errorf("Open(%q) = %v, want ErrNotRecording", in, err)
		}
	}
}

func TestOtherVersions(t *testing.T) {
	data := encodeLog(t, allKinds())
	for _, v := range []uint32{0, Version - 1, Version + 1, 0xffffffff} {
		if v == Version {
			continue
		}
		bad := bytes.Clone(data)
		binary.LittleEndian.PutUint32(bad[len(magic):], v)
		_, err := Open(bytes.NewReader(bad))
		if !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("version %d: %v, want ErrUnsupportedVersion", v, err)
		}
		if v > Version && !strings.Contains(err.Error(), "newer") {
			t.Errorf("version %d: %v does not say the file is newer", v, err)
		}
	}
}

func TestCorruptPayloads(t *testing.T) {
	good := rec(&Time{VCPU: 1, Nanos: 7})
	for _, tc := range []struct {
		name  string
		block craftBlock
		is    error // also matched, if set
	}{
		{"unknown kind", craftBlock{slices.Concat(good, []byte{42, 1, 2}), 2}, ErrUnknownKind},
		{"kind zero", craftBlock{slices.Concat(good, []byte{0}), 2}, ErrUnknownKind},
		{"fewer records than declared", craftBlock{good, 2}, nil},
		{"trailing bytes", craftBlock{slices.Concat(good, []byte{byte(KindTime)}), 1}, nil},
		{"truncated record", craftBlock{good[:len(good)-1], 1}, nil},
		{"vcpu out of range", craftBlock{rec(&Time{VCPU: testCPUs}), 1}, nil},
		{"undefined reason", craftBlock{rec(&Chunk{Reason: 0}), 1}, nil},
		{"port overflow", craftBlock{[]byte{byte(KindPIORead), 0, 0x80, 0x80, 0x04, 1, 0}, 1}, nil},
		{"vcpu overflows uint32", craftBlock{[]byte{byte(KindTime), 0x80, 0x80, 0x80, 0x80, 0x10, 0}, 1}, nil},
		{"digest count", craftBlock{rec(&Digest{VCPUs: make([][32]byte, 2)}), 1}, nil},
		{"digest count beyond data", craftBlock{[]byte{byte(KindDigest), 0, 0xff, 0xff, 0xff, 0x0f}, 1}, nil},
		{"console length beyond data", craftBlock{[]byte{byte(KindConsoleInput), 10, 'a'}, 1}, nil},
		{"exit code overflow", craftBlock{[]byte{byte(KindEnd), 0x80, 0x80, 0x80, 0x80, 0x10, 0}, 1}, nil},
		{"bad varint", craftBlock{append([]byte{byte(KindTime), 0}, bytes.Repeat([]byte{0xff}, 11)...), 1}, nil},
		{"recorder stats vcpu count", craftBlock{rec(&RecorderStats{VCPUs: make([]RecorderVCPUStats, 2)}), 1}, nil},
		{"recorder stats vcpu count beyond data", craftBlock{[]byte{byte(KindRecorderStats), 0, 0xff, 0xff, 0x03}, 1}, nil},
		{"recorder stats bucket count", craftBlock{recorderStatsBuckets(66), 1}, nil},
		{"recorder stats bucket index", craftBlock{recorderStatsBuckets(1, 65, 1), 1}, nil},
		{"recorder stats buckets out of order", craftBlock{recorderStatsBuckets(2, 5, 1, 4, 1), 1}, nil},
		{"recorder stats bucket repeated", craftBlock{recorderStatsBuckets(2, 5, 1, 5, 1), 1}, nil},
		{"recorder stats empty bucket stored", craftBlock{recorderStatsBuckets(1, 5, 0), 1}, nil},
		{"recorder stats buckets truncated", craftBlock{recorderStatsBuckets(2, 5, 1), 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := craft(t, craftBlock{good, 1}, tc.block, craftBlock{good, 1})
			sp := spans(t, data)
			_, got, err := ReadAll(bytes.NewReader(data))
			t.Log(err)
			wantCorrupt(t, err, int64(sp[2].start), 2)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to match %v", err, tc.is)
			}
			if len(got) != 1 {
				t.Errorf("got %d records, want the 1 of the intact first block", len(got))
			}
		})
	}
}

func TestCorruptFrames(t *testing.T) {
	good := rec(&Time{VCPU: 1, Nanos: 7})
	data := craft(t, craftBlock{good, 1}, craftBlock{good, 1})
	sp := spans(t, data)
	off := sp[2].start
	orig := parseFrame(data[off:])
	payload := data[off+frameHeaderSize : sp[2].end]
	for _, tc := range []struct {
		name string
		f    frame
	}{
		{"huge uncompressed length", frame{orig.clen, MaxBlockSize + 1, orig.crc, 1}},
		{"huge compressed length", frame{MaxCompressedBlockSize + 1, orig.ulen, orig.crc, 1}},
		{"zero count", frame{orig.clen, orig.ulen, orig.crc, 0}},
		{"count above length", frame{orig.clen, orig.ulen, orig.crc, orig.ulen + 1}},
		{"zero length, other fields set", frame{0, orig.ulen, orig.crc, 1}},
		{"uncompressed length too small", frame{orig.clen, orig.ulen - 1, orig.crc, 1}},
		{"uncompressed length too large", frame{orig.clen, orig.ulen + 1, orig.crc, 1}},
		{"compressed length too large", frame{orig.clen + 1, orig.ulen, orig.crc, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := patchFrame(data, off, tc.f)
			_, got, err := ReadAll(bytes.NewReader(bad))
			wantCorrupt(t, err, int64(off), 2)
			if len(got) != 1 {
				t.Errorf("got %d records, want 1", len(got))
			}
		})
	}

	// A payload that is not zstd at all, with a matching CRC.
	junk := bytes.Repeat([]byte{0xa5}, len(payload))
	bad := bytes.Clone(data)
	copy(bad[off+frameHeaderSize:], junk)
	bad = patchFrame(bad, off, frame{orig.clen, orig.ulen, crc32.Checksum(junk, castagnoli), 1})
	_, _, err := ReadAll(bytes.NewReader(bad))
	wantCorrupt(t, err, int64(off), 2)

	// Bytes after the end marker.
	_, got, err := ReadAll(bytes.NewReader(append(bytes.Clone(data), 0)))
	wantCorrupt(t, err, int64(len(data)), 4)
	if len(got) != 2 {
		t.Errorf("trailing data: got %d records, want 2", len(got))
	}
}

// headerLog is a recording whose header block payload is js, with no
// records, framed and checksummed correctly.
func headerLog(t *testing.T, js string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	buf.Truncate(preambleSize) // drop the real header block
	if err := w.writeBlock([]byte(js), 1); err != nil {
		t.Fatal(err)
	}
	buf.Write(frame{}.append(nil))
	return buf.Bytes()
}

func TestCorruptHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
	}{
		{"not json", "{"},
		{"trailing data", `{"config":{"cpus":1},"platform":"vmx","mode":"serialized"} x`},
		{"trailing bracket", `{"config":{"cpus":1},"platform":"vmx","mode":"serialized"}]`},
		{"zero cpus", `{"config":{"cpus":0},"platform":"vmx","mode":"serialized"}`},
		{"too many cpus", `{"config":{"cpus":100000},"platform":"vmx","mode":"serialized"}`},
		{"bad hash", `{"config":{"cpus":1},"platform":"vmx","mode":"serialized","hashes":{"kernel":"xyz"}}`},
		{"bad platform", `{"config":{"cpus":1},"platform":"z80","mode":"serialized"}`},
		{"bad mode", `{"config":{"cpus":1},"platform":"vmx","mode":"fast"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(headerLog(t, tc.json)))
			wantCorrupt(t, err, int64(preambleSize), 0)
		})
	}
	// Unknown fields are fine: a newer writer may add some (doc.go).
	data := headerLog(t, `{"config":{"cpus":2},"platform":"svm","mode":"parallel","future":1}`)
	if _, _, err := ReadAll(bytes.NewReader(data)); err != nil {
		t.Errorf("header with an unknown field: %v", err)
	}
}

func TestWriterRefusesBadHeader(t *testing.T) {
	h := testHeader()
	h.Hashes.Disk = "ABC"
	if _, err := NewWriter(&bytes.Buffer{}, h); err == nil {
		t.Error("NewWriter accepted a malformed hash")
	}
	if _, err := NewWriter(&bytes.Buffer{}, testHeader(), WithBlockSize(0)); err == nil {
		t.Error("NewWriter accepted block size 0")
	}
}

// recorderStatsBuckets encodes a RecorderStats record for testCPUs zeroed
// vCPUs whose histogram part is the given raw uvarints (bucket count, then
// index/count pairs), for the checks of its canonical form.
func recorderStatsBuckets(raw ...uint64) []byte {
	b := rec(&RecorderStats{VCPUs: make([]RecorderVCPUStats, testCPUs)})
	b = b[:len(b)-1] // drop the empty histogram's bucket count
	for _, v := range raw {
		b = binary.AppendUvarint(b, v)
	}
	return b
}
