package log

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// countWriter counts bytes and discards them.
type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

// chunkRecords returns n chunk records shaped like a recording's (see
// randomRecords), without the NDEs.
func chunkRecords(n int) []Record {
	recs := make([]Record, 0, n)
	for _, r := range randomRecords(2*n, 5) {
		if c, ok := r.(*Chunk); ok && len(recs) < n {
			recs = append(recs, c)
		}
	}
	return recs
}

// BenchmarkWriteChunks measures the recorder's cost per committed chunk and
// the log's size per chunk, for each zstd level, in one run so the levels
// can be compared on the same machine.
func BenchmarkWriteChunks(b *testing.B) {
	recs := chunkRecords(1 << 16)
	for _, lv := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(lv.String(), func(b *testing.B) {
			var cw countWriter
			w, err := NewWriter(&cw, testHeader(), WithLevel(lv))
			if err != nil {
				b.Fatal(err)
			}
			start := cw.n // header bytes, not a chunk's cost
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.Append(recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s := w.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cw.n-start)/float64(b.N), "B/chunk")
			b.ReportMetric(float64(s.RawBytes)/float64(b.N), "rawB/chunk")
		})
	}
}

// BenchmarkReadChunks measures the replayer's cost per chunk record.
func BenchmarkReadChunks(b *testing.B) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range chunkRecords(1 << 16) {
		if err := w.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for n < b.N {
		r, err := Open(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for n < b.N {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
