package nde

import (
	"errors"
	"testing"
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

type sink struct{ recs []log.Record }

func (s *sink) Append(r log.Record) error { s.recs = append(s.recs, r); return nil }

// TestWallTimeRecordReplay checks that replay feeds back exactly the
// times the recording logged, in order, and reports running out.
func TestWallTimeRecordReplay(t *testing.T) {
	var k sink
	rec := NewRecord(&k)
	var got []time.Time
	for i := 0; i < 3; i++ {
		got = append(got, rec.WallTime(i%2))
		time.Sleep(time.Millisecond)
	}
	if len(k.recs) != 3 || rec.Err() != nil {
		t.Fatalf("recorded %d records, err %v", len(k.recs), rec.Err())
	}
	if tr := k.recs[1].(*log.Time); tr.VCPU != 1 || tr.Nanos != got[1].UnixNano() {
		t.Fatalf("second record %+v, want vcpu 1 at %d", tr, got[1].UnixNano())
	}
	rep := NewReplay(append([]log.Record{&log.Chunk{}}, k.recs...))
	for i := range got {
		if r := rep.WallTime(0); !r.Equal(got[i]) {
			t.Fatalf("replayed time %d is %v, recorded %v", i, r, got[i])
		}
	}
	if rep.Err() != nil {
		t.Fatalf("unexpected error %v", rep.Err())
	}
	rep.WallTime(0)
	if !errors.Is(rep.Err(), ErrExhausted) {
		t.Fatalf("reading past the recording: err %v, want ErrExhausted", rep.Err())
	}
}

// TestRunModeLogsNothing checks that plain runs use the host clock.
func TestRunModeLogsNothing(t *testing.T) {
	s := NewRun()
	if d := time.Since(s.WallTime(0)); d < 0 || d > time.Minute || s.Err() != nil {
		t.Fatalf("run-mode time off by %v (err %v)", d, s.Err())
	}
}
