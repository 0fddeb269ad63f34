package daemon

// The store: one folder per recording under STORE/recordings/ID holding
// meta.json (the Recording, written atomically: temp file, fsync, rename,
// fsync of the folder), the log (log.zst), the console output
// (console.log), each replay's console (replay-RID.console) and the
// children's stderr. A daemon killed at any point finds every meta.json
// either old or new, never torn.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Store is the recordings folder.
type Store struct {
	// dir is STORE/recordings.
	dir string
}

// Names of the files in a recording's folder.
const (
	metaFile    = "meta.json"
	logFile     = "log.zst"
	consoleFile = "console.log"
)

// OpenStore opens (creating) the store in dir and loads every recording.
// Jobs that were queued or running when the daemon died are marked
// interrupted and saved: their log holds the readable prefix.
func OpenStore(dir string) (*Store, []*Recording, error) {
	s := &Store{dir: filepath.Join(dir, "recordings")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	var recs []*Recording
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		r, err := s.load(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			// Created but never saved (killed between mkdir and the
			// first save): nothing was accepted; remove it.
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if s.recover(r) {
			if err := s.Save(r); err != nil {
				return nil, nil, err
			}
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Created.Before(recs[j].Created) })
	return s, recs, nil
}

// recover marks r and its replays interrupted if they had not ended, and
// reports whether it changed anything.
func (s *Store) recover(r *Recording) bool {
	now := time.Now().UTC()
	changed := false
	if !r.State.terminal() {
		r.Error = fmt.Sprintf("the daemon stopped while the recording was %s", r.State)
		r.State, r.Ended, changed = StateInterrupted, &now, true
		if fi, err := os.Stat(s.LogPath(r.ID)); err == nil {
			r.Progress.LogBytes = fi.Size()
		}
	}
	for _, rp := range r.Replays {
		if !rp.State.terminal() {
			rp.Error = fmt.Sprintf("the daemon stopped while the replay was %s", rp.State)
			rp.State, rp.Ended, changed = StateInterrupted, &now, true
		}
	}
	return changed
}

func (s *Store) load(id string) (*Recording, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id, metaFile))
	if err != nil {
		return nil, err
	}
	var r Recording
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("store: %s/%s: %w", id, metaFile, err)
	}
	return &r, nil
}

// Create makes the folder of a new recording and returns its id.
func (s *Store) Create() (string, error) {
	id := newID()
	if err := os.Mkdir(filepath.Join(s.dir, id), 0o700); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return id, nil
}

// Save writes r's meta.json atomically.
func (s *Store) Save(r *Recording) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, r.ID)
	tmp, err := os.CreateTemp(dir, metaFile+".tmp*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, metaFile)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// Delete removes a recording's folder.
func (s *Store) Delete(id string) error { return os.RemoveAll(filepath.Join(s.dir, id)) }

// Dir is a recording's folder.
func (s *Store) Dir(id string) string { return filepath.Join(s.dir, id) }

// LogPath is a recording's log.
func (s *Store) LogPath(id string) string { return filepath.Join(s.dir, id, logFile) }

// ConsolePath is a recording's console output.
func (s *Store) ConsolePath(id string) string { return filepath.Join(s.dir, id, consoleFile) }

// ReplayConsolePath is a replay's console output.
func (s *Store) ReplayConsolePath(id, rid string) string {
	return filepath.Join(s.dir, id, "replay-"+rid+".console")
}

// idBytes is the random part of an id: 6 bytes, 12 hex digits, as short
// as Docker's displayed ids and with 2^48 values no store will collide in.
const idBytes = 6

// newID returns a random hex id.
func newID() string {
	b := make([]byte, idBytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}
