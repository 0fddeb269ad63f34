package session

import (
	"strings"
	"testing"

	"github.com/samsara-vmm/samsara/internal/log"
)

// TestPendingStop checks how replay pairs state stop records with the
// chunk they end: a split stop's records gather until the one with the
// state, and a record without its chunk, or a stop chunk without its
// records, is a corrupt recording, not a silent replay.
func TestPendingStop(t *testing.T) {
	stopChunk := func(v uint32) *log.Chunk { return &log.Chunk{VCPU: v, Reason: log.ReasonStateStop} }
	pagesOnly := &log.StateStop{VCPU: 1, Pages: []uint64{7}, Data: make([]byte, log.PageSize)}
	withState := &log.StateStop{VCPU: 1, Arch: []byte{1}, Pages: []uint64{9}, Data: make([]byte, log.PageSize)}

	var p pendingStop
	if err := p.add(pagesOnly); err != nil {
		t.Fatal(err)
	}
	if err := p.add(withState); err != nil {
		t.Fatal(err)
	}
	if err := p.check(3, stopChunk(1)); err != nil {
		t.Errorf("a split stop and its chunk: %v", err)
	}
	if p.pages != 2 || len(p.recs) != 2 {
		t.Errorf("gathered %d pages in %d records, want 2 in 2", p.pages, len(p.recs))
	}

	for _, tc := range []struct {
		name  string
		recs  []*log.StateStop
		chunk *log.Chunk
		want  string // in the error; "" for none
	}{
		{"stop chunk without records", nil, stopChunk(0), "no state stop record precedes it"},
		{"records before a chunk that ended at an exit", []*log.StateStop{withState}, &log.Chunk{VCPU: 1, Reason: log.ReasonIO}, "precede chunk"},
		{"records of another vCPU", []*log.StateStop{withState}, stopChunk(0), "follows a state stop of vcpu 1"},
		{"a chunk that ended at an exit", nil, &log.Chunk{VCPU: 0, Reason: log.ReasonHalt}, ""},
	} {
		var p pendingStop
		for _, r := range tc.recs {
			if err := p.add(r); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		err := p.check(5, tc.chunk)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}

	p = pendingStop{}
	if err := p.add(withState); err != nil {
		t.Fatal(err)
	}
	if err := p.add(pagesOnly); err == nil {
		t.Error("a record after the one with the state was taken")
	}
}
