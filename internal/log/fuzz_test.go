package log

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzReader feeds arbitrary bytes to the Reader. It must never panic (the
// Reader's own panic marks a block that decoded differently in its two
// passes), never fail with anything but the documented errors, and every
// recording it accepts must survive a re-encode unchanged.
//
//	go test -run '^$' -fuzz=FuzzReader -fuzzminimizetime=5s ./internal/log
//
// (The default minimization budget of 60 s per new input stalls a short
// run: candidates that are valid recordings take the re-encode path.)
func FuzzReader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(magic))
	for _, bs := range []int{1, 64, 300, DefaultBlockSize} {
		f.Add(encodeLog(f, allKinds(), WithBlockSize(bs)))
	}
	multi := encodeLog(f, randomRecords(300, 4), WithBlockSize(512))
	f.Add(multi)
	f.Add(multi[:len(multi)/2])
	f.Add(multi[:len(multi)-frameHeaderSize])
	f.Add(craft(f, craftBlock{rec(&Time{VCPU: 1, Nanos: 7}), 1}, craftBlock{[]byte{byte(KindDigest), 0, 4}, 1}))
	f.Add(encodeLog(f, append(randomRecords(50, 5), testRecorderStats(), &End{Reason: "poweroff"})))
	f.Add(craft(f, craftBlock{recorderStatsBuckets(3, 1, 1, 7, 2, 64, 3), 1}))

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(bytes.NewReader(data))
		if err != nil {
			checkReadError(t, err)
			return
		}
		// Keep at most a bounded number of records: one small block can
		// legitimately decompress to millions of them.
		const keep = 4096
		var recs []Record
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				checkReadError(t, err)
				break
			}
			recs = append(recs, rec)
			if len(recs) > keep {
				return
			}
		}
		// Re-encode what was read; it must read back identically.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, r.Header(), WithLevel(zstd.SpeedFastest))
		if err != nil {
			// Re-marshaling may escape characters and outgrow
			// MaxHeaderSize; anything else is a bug.
			if len(data) < MaxHeaderSize/8 {
				t.Fatalf("header was read but cannot be written: %v", err)
			}
			return
		}
		for _, rec := range recs {
			if err := w.Append(rec); err != nil {
				t.Fatalf("record was read but cannot be written: %v", err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h2, recs2, err := ReadAll(&buf)
		if err != nil {
			t.Fatalf("re-encoded recording: %v", err)
		}
		// Compare headers as JSON: time.Time's location pointers differ.
		j1, _ := json.Marshal(r.Header())
		j2, _ := json.Marshal(h2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("header changed: %s -> %s", j1, j2)
		}
		if !sameRecords(recs, recs2) {
			t.Fatal("records changed on re-encode")
		}
	})
}

// checkReadError fails unless err is one of the documented read errors; a
// bytes.Reader never fails, so no I/O error may appear.
func checkReadError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotRecording) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("undocumented error %T: %v", err, err)
	}
}

// allocated runs fn and returns the bytes it allocated on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReaderMemoryBounded checks the size limits: lying frame headers must
// not make the reader allocate what they claim.
func TestReaderMemoryBounded(t *testing.T) {
	good := craft(t, craftBlock{rec(&Time{VCPU: 1}), 1})
	off := spans(t, good)[1].start
	read := func(data []byte) uint64 {
		return allocated(func() {
			_, _, err := ReadAll(bytes.NewReader(data))
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}

	// A block that declares the maximum sizes but holds 100 bytes.
	truncated := patchFrame(good, off, frame{MaxCompressedBlockSize, MaxBlockSize, 1, 1})[:off+frameHeaderSize]
	truncated = append(truncated, make([]byte, 100)...)
	n := read(truncated)
	t.Logf("truncated huge block: %d bytes allocated", n)
	if n > 4<<20 {
		t.Errorf("truncated huge block: %d bytes allocated", n)
	}

	// A valid zstd frame of 8 MiB of zeros (a few hundred bytes
	// compressed) in a block that declares 100 bytes uncompressed.
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	z := enc.EncodeAll(make([]byte, 8<<20), nil)
	bomb := append(bytes.Clone(good[:off]), frame{uint32(len(z)), 100, crc32.Checksum(z, castagnoli), 1}.append(nil)...)
	bomb = append(bomb, z...)
	n = read(bomb)
	t.Logf("decompression bomb: %d bytes allocated", n)
	if n > 4<<20 {
		t.Errorf("decompression bomb: %d bytes allocated", n)
	}
}
