package log

import (
	"fmt"
	"io"
	"os"
)

// KindStats counts the records of one kind.
type KindStats struct {
	// Records is the number of records.
	Records uint64 `json:"records"`
	// Bytes is their encoded size before compression, kind bytes included.
	Bytes uint64 `json:"bytes"`
}

// Stats are a Writer's or Reader's counters; `inspect` prints them.
type Stats struct {
	// Records is the number of records appended or returned.
	Records uint64 `json:"records"`
	// RawBytes is the encoded size of those records before compression.
	RawBytes uint64 `json:"raw_bytes"`
	// Blocks is the number of record blocks (the header block excluded).
	Blocks uint64 `json:"blocks"`
	// CompressedBytes is the size of the record blocks' compressed
	// payloads (frame headers excluded).
	CompressedBytes uint64 `json:"compressed_bytes"`
	// FileBytes is every byte written or read, preamble, header block,
	// frame headers and end marker included.
	FileBytes uint64 `json:"file_bytes"`
	// ByKind breaks Records and RawBytes down by kind; kinds with no
	// records are absent.
	ByKind map[Kind]KindStats `json:"by_kind"`

	// byKind is what Writer and Reader count into on the hot path (an
	// array index instead of a map update); export turns it into ByKind.
	byKind [numKinds]KindStats
}

// export returns a copy of s with ByKind filled from byKind.
func (s *Stats) export() Stats {
	out := *s
	out.ByKind = make(map[Kind]KindStats)
	for k, ks := range s.byKind {
		if ks.Records != 0 {
			out.ByKind[Kind(k)] = ks
		}
	}
	return out
}

// VCPUSummary is what a recording says about one vCPU.
type VCPUSummary struct {
	// Chunks is the number of committed chunks the vCPU ran.
	Chunks uint64 `json:"chunks"`
	// Squashes is the total re-executions before those chunks committed.
	Squashes uint64 `json:"squashes"`
	// Last is the end point of the vCPU's last chunk.
	Last Point `json:"last"`
}

// Summary is what `samsara inspect` shows of a recording.
type Summary struct {
	// Header is the recording's header.
	Header *Header `json:"header"`
	// Stats counts the records read.
	Stats Stats `json:"stats"`
	// VCPUs is indexed by vCPU; its length is Header.Config.CPUs.
	VCPUs []VCPUSummary `json:"vcpus"`
	// ChunkReasons counts chunks by the reason they ended.
	ChunkReasons map[Reason]uint64 `json:"chunk_reasons"`
	// End is the last End record, nil if the recording has none.
	End *End `json:"end,omitempty"`
	// Recorder is the last RecorderStats record, nil if the recording has
	// none (serialized recordings, parallel ones cut short).
	Recorder *RecorderStats `json:"recorder,omitempty"`
	// Complete is true if the reader reached the end marker without error.
	Complete bool `json:"complete"`
}

// Summarize reads a whole recording and summarizes it. For a truncated or
// damaged recording it returns the summary of the intact prefix together
// with the *CorruptError, so inspect can show both; if Open fails it returns
// a nil Summary and the error.
func Summarize(rd io.Reader) (*Summary, error) {
	r, err := Open(rd)
	if err != nil {
		return nil, err
	}
	s := &Summary{
		Header:       r.Header(),
		VCPUs:        make([]VCPUSummary, r.Header().Config.CPUs),
		ChunkReasons: make(map[Reason]uint64),
	}
	for {
		rec, err := r.Next()
		if err != nil {
			s.Stats = r.Stats()
			if err == io.EOF {
				s.Complete = true
				return s, nil
			}
			return s, err
		}
		switch rec := rec.(type) {
		case *Chunk:
			v := &s.VCPUs[rec.VCPU] // VCPU < CPUs: the reader checked
			v.Chunks++
			v.Squashes += uint64(rec.Squashes)
			v.Last = rec.End
			s.ChunkReasons[rec.Reason]++
		case *End:
			s.End = rec
		case *RecorderStats:
			s.Recorder = rec
		}
	}
}

// SummarizeFile is Summarize on the file at path.
func SummarizeFile(path string) (*Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("summarize: %w", err)
	}
	defer f.Close()
	s, err := Summarize(f)
	if err != nil {
		return s, fmt.Errorf("summarize %s: %w", path, err)
	}
	return s, nil
}
