package log

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRoundTripEachRecord(t *testing.T) {
	for _, r := range allKinds() {
		t.Run(r.Kind().String(), func(t *testing.T) {
			data := encodeLog(t, []Record{r})
			h, got, err := ReadAll(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, testHeader()) {
				t.Errorf("header = %+v, want %+v", h, testHeader())
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], r) {
				t.Fatalf("got %#v, want %#v", got, r)
			}
		})
	}
}

func TestRoundTripAllKindsSmallBlocks(t *testing.T) {
	want := allKinds()
	for _, bs := range []int{1, 7, 100, DefaultBlockSize} {
		data := encodeLog(t, want, WithBlockSize(bs))
		_, got, err := ReadAll(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("block size %d: %v", bs, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("block size %d: records differ", bs)
		}
	}
}

// randomRecords returns n records shaped like a recording: chunks in
// round-robin over the vCPUs with growing progress, NDEs in between.
func randomRecords(n int, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	var prog [testCPUs]Point
	recs := make([]Record, 0, n)
	for i := 0; len(recs) < n; i++ {
		v := uint32(i % testCPUs)
		p := &prog[v]
		p.UserBranches += uint64(rng.IntN(100000))
		p.KernelInsns += uint64(rng.IntN(5000))
		p.RIP = 0xffffffff81000000 + uint64(rng.IntN(1<<20))
		p.RCX = uint64(rng.IntN(64))
		recs = append(recs, &Chunk{VCPU: v, End: *p, Reason: Reason(1 + rng.IntN(numReasons-1)), Squashes: uint32(rng.IntN(3))})
		switch rng.IntN(8) {
		case 0:
			recs = append(recs, &PIORead{VCPU: v, Port: 0x3fd, Size: 1, Value: 0x60})
		case 1:
			recs = append(recs, &Time{VCPU: v, Nanos: int64(i) * 1000})
		case 2:
			recs = append(recs, &Interrupt{VCPU: v, Vector: 0xec, At: *p})
		}
	}
	return recs[:n]
}

func TestLargeStreamManyBlocks(t *testing.T) {
	const n = 200_000
	want := randomRecords(n, 1)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range want {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
		// Bounded memory: the open block never grows far past the
		// threshold (a record never exceeds a few dozen bytes here).
		if c := cap(w.buf); c > 2*DefaultBlockSize {
			t.Fatalf("writer buffer grew to %d bytes", c)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ws := w.Stats()
	if ws.Blocks < 10 {
		t.Fatalf("only %d blocks for %d raw bytes", ws.Blocks, ws.RawBytes)
	}
	if ws.FileBytes != uint64(buf.Len()) {
		t.Errorf("writer FileBytes %d, file has %d", ws.FileBytes, buf.Len())
	}

	r, err := Open(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		got, err := r.Next()
		if err == io.EOF {
			if i != n {
				t.Fatalf("EOF after %d records, want %d", i, n)
			}
			break
		}
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("record %d = %#v, want %#v", i, got, want[i])
		}
	}
	// Once the end is reached, the reader's counters equal the writer's.
	if rs := r.Stats(); !reflect.DeepEqual(rs, ws) {
		t.Errorf("reader stats %+v\nwriter stats %+v", rs, ws)
	}
	t.Logf("%d records, %d blocks, %d raw bytes, %d file bytes (%.1f B/record)",
		ws.Records, ws.Blocks, ws.RawBytes, ws.FileBytes, float64(ws.FileBytes)/n)
}

func TestLargeRecords(t *testing.T) {
	big := &ConsoleInput{Data: bytes.Repeat([]byte("x"), MaxBlockSize-8)}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), WithBlockSize(MaxBlockSize))
	if err != nil {
		t.Fatal(err)
	}
	small := &Time{VCPU: 1, Nanos: 5}
	// small then big: big does not fit in the open block and must start
	// the next one.
	for _, r := range []Record{small, big, small} {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	tooBig := &ConsoleInput{Data: make([]byte, MaxBlockSize)}
	if err := w.Append(tooBig); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("append of a too large record: %v, want ErrRecordTooLarge", err)
	}
	if err := w.Close(); err != nil { // still usable after the refusal
		t.Fatal(err)
	}
	if s := w.Stats(); s.Blocks != 2 || s.Records != 3 {
		t.Errorf("stats %+v, want 2 blocks and 3 records", s)
	}
	_, got, err := ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Record{small, big, small}) {
		t.Fatal("records differ")
	}
}

func TestWriterRefusesInvalidRecords(t *testing.T) {
	for _, r := range []Record{
		&Chunk{VCPU: testCPUs, Reason: ReasonIO},
		&Chunk{VCPU: 0},                       // Reason unset
		&Chunk{VCPU: 0, Reason: numReasons},   // undefined reason
		&PIORead{VCPU: 1 << 31},               // vCPU out of range
		&Digest{VCPUs: make([][32]byte, 3)},   // one hash short
		&Digest{VCPUs: make([][32]byte, 5)},   // one hash too many
		&Interrupt{VCPU: testCPUs, Vector: 3}, // vCPU out of range

		&RecorderStats{VCPUs: make([]RecorderVCPUStats, testCPUs-1)}, // one vCPU short
		&RecorderStats{},                       // no vCPUs
		&StateStop{VCPU: 0, Pages: []uint64{}}, // no state
		&StateStop{VCPU: 0, Arch: []byte{1}, Pages: []uint64{5}, Data: make([]byte, 10)}, // short page
		&StateStop{VCPU: 0, Arch: []byte{1}, Pages: []uint64{5, 5}, Data: make([]byte, 2*PageSize)},
		&StateStop{VCPU: testCPUs, Arch: []byte{1}, Pages: []uint64{}},
	} {
		w, err := NewWriter(io.Discard, testHeader())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Append(r); err == nil {
			t.Errorf("Append(%#v) succeeded", r)
		}
		if err := w.Append(&Time{}); err != nil {
			t.Errorf("writer unusable after a refused record: %v", err)
		}
	}
}

type failWriter struct{ left int }

func (f *failWriter) Write(b []byte) (int, error) {
	if len(b) > f.left {
		n := f.left
		f.left = 0
		return n, errors.New("disk full")
	}
	f.left -= len(b)
	return len(b), nil
}

func TestWriterErrorsAreSticky(t *testing.T) {
	w, err := NewWriter(&failWriter{left: 2000}, testHeader(), WithBlockSize(64))
	if err != nil {
		t.Fatal(err)
	}
	var first error
	for i := 0; i < 10000 && first == nil; i++ {
		first = w.Append(&Time{Nanos: int64(i) << 40})
	}
	if first == nil {
		t.Fatal("no error from a failing writer")
	}
	if err := w.Append(&Time{}); err != first {
		t.Errorf("later Append: %v, want the first error %v", err, first)
	}
	if err := w.Close(); err != first {
		t.Errorf("Close: %v, want the first error %v", err, first)
	}

	w, err = NewWriter(io.Discard, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Append(&Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
}

func TestFlushReachesBufferedWriter(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 1<<20)
	w, err := NewWriter(bw, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	want := allKinds()
	for _, r := range want {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Flushed but not closed: all records, then the missing end marker.
	_, got, err := ReadAll(bytes.NewReader(buf.Bytes()))
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != int64(buf.Len()) {
		t.Fatalf("err = %v, want a CorruptError at offset %d", err, buf.Len())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("records differ")
	}
}

func TestSummarize(t *testing.T) {
	recs := append(randomRecords(5000, 2), testRecorderStats(), &End{ExitCode: 3, Reason: "poweroff"})
	data := encodeLog(t, recs, WithBlockSize(4096))
	s, err := Summarize(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var chunks [testCPUs]uint64
	reasons := map[Reason]uint64{}
	for _, r := range recs {
		if c, ok := r.(*Chunk); ok {
			chunks[c.VCPU]++
			reasons[c.Reason]++
		}
	}
	for v := range chunks {
		if s.VCPUs[v].Chunks != chunks[v] {
			t.Errorf("vcpu %d: %d chunks, want %d", v, s.VCPUs[v].Chunks, chunks[v])
		}
	}
	if !reflect.DeepEqual(s.ChunkReasons, reasons) {
		t.Errorf("reasons %v, want %v", s.ChunkReasons, reasons)
	}
	if !s.Complete || s.End == nil || s.End.ExitCode != 3 || s.Stats.FileBytes != uint64(len(data)) {
		t.Errorf("summary %+v", s)
	}
	if !reflect.DeepEqual(s.Recorder, testRecorderStats()) {
		t.Errorf("recorder stats %+v, want %+v", s.Recorder, testRecorderStats())
	}
	if s.Stats.ByKind[KindChunk].Records != sum(chunks[:]) {
		t.Errorf("chunk count by kind %d, want %d", s.Stats.ByKind[KindChunk].Records, sum(chunks[:]))
	}
	// inspect --json must be able to print it.
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(j, []byte(`"chunk":{"records":`)) || !bytes.Contains(j, []byte(`"budget":`)) ||
		!bytes.Contains(j, []byte(`"chunk_sizes":[{"min":1,"max":1,"chunks":3},{"min":512,"max":1023,"chunks":1000}`)) {
		t.Errorf("JSON lacks named kinds or reasons: %s", j)
	}

	// A truncated recording summarizes its intact prefix and reports why.
	s, err = Summarize(bytes.NewReader(data[:len(data)/2]))
	if !errors.Is(err, ErrCorrupt) || s == nil || s.Complete || s.Stats.Records == 0 {
		t.Errorf("truncated: summary %+v, err %v", s, err)
	}
}

func sum(xs []uint64) (s uint64) {
	for _, x := range xs {
		s += x
	}
	return s
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.zst")
	data := encodeLog(t, allKinds())
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := SummarizeFile(path)
	if err != nil || !s.Complete || s.Stats.FileBytes != uint64(len(data)) {
		t.Fatalf("SummarizeFile: %+v, %v", s, err)
	}
	if h, err := HashFile(path); err != nil || h != HashBytes(data) {
		t.Errorf("HashFile = %s, %v; want %s", h, err, HashBytes(data))
	}
	if _, err := SummarizeFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SummarizeFile(missing) = %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(path, data[:len(data)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := SummarizeFile(path); !errors.Is(err, ErrCorrupt) || s == nil || s.Complete {
		t.Errorf("SummarizeFile(truncated) = %+v, %v", s, err)
	}
}
