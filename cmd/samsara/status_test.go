package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/samsara-vmm/samsara/internal/daemon"
	"github.com/samsara-vmm/samsara/internal/session"
)

// TestStatusFinal: the last line of the status stream carries the outcome
// the daemon shows: an exit status, a divergence, or a failure's message.
func TestStatusFinal(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   daemon.Outcome
		err  error
		want daemon.ChildFinal
	}{
		{"finished", daemon.OutcomeFinished, nil, daemon.ChildFinal{Outcome: daemon.OutcomeFinished}},
		{"exit status", daemon.OutcomeFinished, &exitError{status: 3}, daemon.ChildFinal{Outcome: daemon.OutcomeFinished, ExitStatus: 3}},
		{"diverged", daemon.OutcomeMatched, &session.DivergenceError{Chunk: 4, VCPU: 1, What: "rip", Want: "1", Got: "2"},
			daemon.ChildFinal{Outcome: daemon.OutcomeDiverged, Divergence: &daemon.Divergence{Chunk: 4, VCPU: 1, What: "rip", Want: "1", Got: "2",
				Message: "replay diverged at chunk 4 (vcpu 1): rip: recorded 1, replayed 2"}}},
		{"failed", daemon.OutcomeFinished, errors.New("boom"), daemon.ChildFinal{Outcome: daemon.OutcomeFailed, Error: "boom"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			s := newStatusStream(int(w.Fd()), 10)
			s.finish(c.ok, c.err)
			s.finish(daemon.OutcomeFailed, errors.New("second finish")) // ignored
			w.Close()
			sc := bufio.NewScanner(r)
			var lines []daemon.ChildStatus
			for sc.Scan() {
				var st daemon.ChildStatus
				if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				lines = append(lines, st)
			}
			if len(lines) != 1 || lines[0].Final == nil || lines[0].TotalChunks != 10 {
				t.Fatalf("lines %+v: want one final line with 10 total chunks", lines)
			}
			got, _ := json.Marshal(lines[0].Final)
			want, _ := json.Marshal(c.want)
			if string(got) != string(want) {
				t.Errorf("final %s, want %s", got, want)
			}
		})
	}
}
