package log

import (
	"encoding/json"
	"math"
	"testing"
)

func TestSizeBuckets(t *testing.T) {
	for _, tc := range []struct {
		work   uint64
		bucket int
		lo, hi uint64
	}{
		{0, 0, 0, 0},
		{1, 1, 1, 1},
		{2, 2, 2, 3},
		{3, 2, 2, 3},
		{1000, 10, 512, 1023},
		{1 << 40, 41, 1 << 40, 1<<41 - 1},
		{math.MaxUint64, 64, 1 << 63, math.MaxUint64},
	} {
		b := SizeBucket(tc.work)
		lo, hi := SizeBucketRange(b)
		if b != tc.bucket || lo != tc.lo || hi != tc.hi {
			t.Errorf("work %d: bucket %d [%d, %d], want %d [%d, %d]", tc.work, b, lo, hi, tc.bucket, tc.lo, tc.hi)
		}
	}
}

func TestSizeHistogramJSON(t *testing.T) {
	for _, h := range []SizeHistogram{{}, testRecorderStats().ChunkSizes, fullHistogram()} {
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back SizeHistogram
		if err := json.Unmarshal(b, &back); err != nil || back != h {
			t.Errorf("JSON round trip of %s: %v, %v", b, back, err)
		}
	}
	b, _ := json.Marshal(testRecorderStats().ChunkSizes)
	if want := `[{"min":1,"max":1,"chunks":3},{"min":512,"max":1023,"chunks":1000},{"min":2048,"max":4095,"chunks":900}]`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var h SizeHistogram
	if err := json.Unmarshal([]byte(`[{"min":3,"max":5,"chunks":1}]`), &h); err == nil {
		t.Error("UnmarshalJSON accepted a range that is not a bucket")
	}
	ts := testRecorderStats()
	if h.Count() != 0 || ts.ChunkSizes.Count() != 3+1000+900 {
		t.Errorf("Count = %d and %d, want 0 and 1903", h.Count(), ts.ChunkSizes.Count())
	}
}
