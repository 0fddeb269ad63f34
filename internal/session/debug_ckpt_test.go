package session

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCkptThinning adds a checkpoint every 10 chunks up to chunk 2000
// with at most 8 kept: the set stays bounded, keeps the newest, drops
// the files it forgets, and its gaps grow going back (each at least the
// one after it, within one spacing), so going back a little stays cheap.
func TestCkptThinning(t *testing.T) {
	dir := t.TempDir()
	c := &ckptSet{dir: dir, max: 8}
	for i := 10; i <= 2000; i += 10 {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.add(debugCkpt{chunk: i, path: path})
	}
	got := c.chunks()
	if len(got) != 8 || got[len(got)-1] != 2000 {
		t.Fatalf("kept %v: want 8, the newest (2000) among them", got)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != len(got) {
		t.Errorf("%d files on disk for %d checkpoints", len(files), len(got))
	}
	if c.bytes() != int64(len(got)) {
		t.Errorf("bytes() = %d, want %d", c.bytes(), len(got))
	}
	prev := 0
	var gaps []int
	for _, ch := range got {
		gaps = append(gaps, ch-prev)
		prev = ch
	}
	for i := 0; i+1 < len(gaps); i++ {
		if gaps[i]+10 < gaps[i+1] {
			t.Errorf("gaps %v (kept %v): a gap further back is smaller than the one after it", gaps, got)
			break
		}
	}
	if last := gaps[len(gaps)-1]; last > 2000/8 {
		t.Errorf("the newest gap is %d chunks (kept %v): thinning made going back a little expensive", last, got)
	}
	t.Logf("kept %v (gaps %v)", got, gaps)
}
