package log

import (
	"encoding/json"
	"fmt"
	"math/bits"
)

// NumSizeBuckets is the length of a SizeHistogram: one bucket for 0 and one
// per power of two of a uint64.
const NumSizeBuckets = 65

// SizeHistogram counts chunks by work units in power-of-two buckets, with
// the same indexing as commit.Histogram.Buckets (so one converts to the
// other): bucket 0 counts chunks of 0 units, bucket i >= 1 those of
// [2^(i-1), 2^i) units. See SizeBucketRange.
//
// In the file only the non-empty buckets are stored (see doc.go); in JSON
// it is the list of non-empty buckets with their ranges:
//
//	[{"min":64,"max":127,"chunks":12}, ...]
type SizeHistogram [NumSizeBuckets]uint64

// SizeBucketRange returns the smallest and largest work counted in bucket i
// of a SizeHistogram (0 <= i < NumSizeBuckets).
func SizeBucketRange(i int) (lo, hi uint64) {
	if i == 0 {
		return 0, 0
	}
	lo = 1 << (i - 1)
	return lo, lo<<1 - 1
}

// SizeBucket returns the bucket of a SizeHistogram that counts a chunk of
// work units.
func SizeBucket(work uint64) int { return bits.Len64(work) }

// Count returns the number of chunks counted.
func (h *SizeHistogram) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// sizeBucketJSON is one non-empty bucket in JSON.
type sizeBucketJSON struct {
	Min    uint64 `json:"min"`    // smallest work in the bucket
	Max    uint64 `json:"max"`    // largest work in the bucket
	Chunks uint64 `json:"chunks"` // chunks counted
}

// MarshalJSON lists the non-empty buckets, smallest first.
func (h SizeHistogram) MarshalJSON() ([]byte, error) {
	out := []sizeBucketJSON{}
	for i, c := range h {
		if c != 0 {
			lo, hi := SizeBucketRange(i)
			out = append(out, sizeBucketJSON{lo, hi, c})
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON parses what MarshalJSON produces.
func (h *SizeHistogram) UnmarshalJSON(b []byte) error {
	var in []sizeBucketJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*h = SizeHistogram{}
	for _, e := range in {
		i := SizeBucket(e.Min)
		if lo, hi := SizeBucketRange(i); lo != e.Min || hi != e.Max {
			return fmt.Errorf("chunk size bucket [%d, %d] is not a power-of-two bucket", e.Min, e.Max)
		}
		h[i] += e.Chunks
	}
	return nil
}
