package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzRead: no input makes Read panic, hang or allocate what its header
// claims; whatever it accepts, it writes back in the same format and
// reads again to the same state. The seeds are a valid small file in
// each version and a few damaged ones. `make test` runs it for a few
// seconds (go test -run XXX -fuzz FuzzRead -fuzztime 5s).
func FuzzRead(f *testing.F) {
	mem, runs := testMem()
	meta := testMeta(mem)
	for _, v := range []uint32{1, 2, Version} {
		f.Add(encode(f, meta, mem, runs, v))
	}
	good := encode(f, meta, mem, runs, Version)
	f.Add(good[:len(good)/2])
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint64(huge[24:], 1<<40)
	f.Add(huge)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, got, err := read(b)
		if err != nil {
			var e *Error
			if errors.As(err, &e) != errors.Is(err, ErrBad) {
				t.Fatalf("error %v: *Error and ErrBad disagree", err)
			}
			return
		}
		// Accepted: the state is one Write can write and Read reads back.
		var out bytes.Buffer
		if err := Write(&out, m, got, nonZero(got), Version); err != nil {
			t.Fatalf("accepted, but cannot write it back: %v", err)
		}
		if _, again, err := read(out.Bytes()); err != nil || !bytes.Equal(again, got) {
			t.Fatalf("accepted, written back, read again: %v", err)
		}
	})
}

// nonZero returns the runs of non-zero pages of mem.
func nonZero(mem []byte) []Run {
	var runs []Run
	zero := make([]byte, pageSize)
	for p := uint64(0); p < uint64(len(mem))/pageSize; p++ {
		if bytes.Equal(mem[p*pageSize:(p+1)*pageSize], zero) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].First+runs[n-1].Count == p {
			runs[n-1].Count++
		} else {
			runs = append(runs, Run{First: p, Count: 1})
		}
	}
	return runs
}
