package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestCrashRecovery: a daemon that dies without shutting down (SIGKILL)
// leaves a store from which a new daemon lists every ended recording
// unchanged and marks the queued and running ones, and a running replay,
// interrupted. Leftovers of a save cut short are ignored.
func TestCrashRecovery(t *testing.T) {
	e := newEnv(t, 2, "")
	fin := e.create(1, map[string]string{"k": "v"})
	jf := e.nextJob()
	jf.progress(5)
	e.waitState(fin.ID, StateRecording)
	jf.end(ChildFinal{Outcome: OutcomeFinished})
	e.waitState(fin.ID, StateFinished)
	rp, _ := e.c.Replay(fin.ID)
	e.nextJob() // the replay runs and never ends
	running := e.create(1, nil)
	jr := e.nextJob()
	jr.progress(2)
	e.waitState(running.ID, StateRecording)
	queued := e.create(2, nil)
	e.noJob()

	before, err := e.c.Get(fin.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A save cut short leaves a temp file; a create cut short, a folder
	// without meta.json.
	os.WriteFile(filepath.Join(e.store, "recordings", fin.ID, metaFile+".tmp123"), []byte("{torn"), 0o600)
	os.Mkdir(filepath.Join(e.store, "recordings", "deadbeef0000"), 0o700)

	// "SIGKILL": the first daemon is abandoned without Shutdown.
	e.srv.Close()
	e2 := newEnv(t, 2, e.store)
	e2.noJob() // nothing is restarted
	rs, err := e2.c.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d recordings after restart, want 3", len(rs))
	}
	after, err := e2.c.Get(fin.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The finished recording is unchanged but for its replay, which was
	// running.
	if len(after.Replays) != 1 || after.Replays[0].ID != rp.ID || after.Replays[0].State != StateInterrupted {
		t.Fatalf("replays after restart: %+v, want %s interrupted", after.Replays, rp.ID)
	}
	before.Replays, after.Replays = nil, nil
	if b, a := mustJSON(before), mustJSON(after); string(b) != string(a) {
		t.Errorf("finished recording changed across the restart:\nbefore %s\nafter  %s", b, a)
	}
	for _, id := range []string{running.ID, queued.ID} {
		r, _ := e2.c.Get(id)
		if r.State != StateInterrupted || r.Error == "" || r.Ended == nil {
			t.Errorf("%s after restart: %s (%q), want interrupted with a reason", id, r.State, r.Error)
		}
	}
	if r, _ := e2.c.Get(running.ID); r.Progress.Chunks != 2 {
		t.Errorf("interrupted recording lost its progress: %+v", r.Progress)
	}
	if _, err := os.Stat(filepath.Join(e.store, "recordings", "deadbeef0000")); !os.IsNotExist(err) {
		t.Errorf("a folder without meta.json survived the restart: %v", err)
	}
	// The restarted daemon is usable: an interrupted recording replays.
	if _, err := e2.c.Replay(running.ID); err != nil {
		t.Errorf("replay of an interrupted recording: %v", err)
	}
	e2.nextJob()
}

// TestStoreAtomicSave: meta.json is always a whole document: a save
// replaces it by rename and leaves no temp files.
func TestStoreAtomicSave(t *testing.T) {
	s, recs, err := OpenStore(t.TempDir())
	if err != nil || len(recs) != 0 {
		t.Fatal(recs, err)
	}
	id, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	r := &Recording{ID: id, State: StateQueued}
	for i := 0; i < 3; i++ {
		r.Progress.Chunks = int64(i)
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(s.Dir(id))
	if len(ents) != 1 || ents[0].Name() != metaFile {
		t.Errorf("folder holds %v, want only %s", ents, metaFile)
	}
	var got Recording
	b, _ := os.ReadFile(filepath.Join(s.Dir(id), metaFile))
	if err := json.Unmarshal(b, &got); err != nil || got.Progress.Chunks != 2 {
		t.Errorf("meta.json: %s, %v", b, err)
	}
}
