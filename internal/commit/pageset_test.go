package commit

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveCommon is the reference for FirstCommon: a map lookup per page.
func naiveCommon(a, b []uint64) (uint64, bool) {
	in := make(map[uint64]bool, len(b))
	for _, p := range b {
		in[p] = true
	}
	best, ok := uint64(0), false
	for _, p := range a {
		if in[p] && (!ok || p < best) {
			best, ok = p, true
		}
	}
	return best, ok
}

// seqPages returns n pages start, start+step, ...
func seqPages(start, step uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = start + uint64(i)*step
	}
	return out
}

func TestNewPageSet(t *testing.T) {
	tests := []struct {
		name string
		in   []uint64
		want []uint64
	}{
		{"empty", nil, nil},
		{"one", []uint64{7}, []uint64{7}},
		{"unsorted", []uint64{9, 1, 5}, []uint64{1, 5, 9}},
		{"duplicates", []uint64{3, 3, 1, 3, 1}, []uint64{1, 3}},
		{"extremes", []uint64{^uint64(0), 0}, []uint64{0, ^uint64(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			s := NewPageSet(tt.in...)
			if !slices.Equal(s.Pages(), tt.want) {
				t.Errorf("NewPageSet(%v) = %v, want %v", tt.in, s.Pages(), tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("NewPageSet modified its argument: %v -> %v", in, tt.in)
			}
			if s.Len() != len(tt.want) || s.Empty() != (len(tt.want) == 0) {
				t.Errorf("Len %d Empty %v for %v", s.Len(), s.Empty(), tt.want)
			}
			for _, p := range tt.want {
				if !s.Contains(p) {
					t.Errorf("Contains(%#x) = false", p)
				}
			}
			if s.Contains(2) != slices.Contains(tt.want, 2) {
				t.Errorf("Contains(2) wrong for %v", tt.want)
			}
		})
	}
}

func TestPageSetFromSorted(t *testing.T) {
	tests := []struct {
		name    string
		in      []uint64
		wantErr bool
	}{
		{"nil", nil, false},
		{"ascending", []uint64{1, 2, 10}, false},
		{"duplicate", []uint64{1, 2, 2}, true},
		{"descending", []uint64{3, 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := PageSetFromSorted(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !slices.Equal(s.Pages(), tt.in) {
				t.Errorf("pages = %v, want %v", s.Pages(), tt.in)
			}
		})
	}
}

func TestPageSetIntersection(t *testing.T) {
	tests := []struct {
		name       string
		a, b       []uint64
		wantCommon []uint64
	}{
		{"both empty", nil, nil, nil},
		{"one empty", []uint64{1, 2}, nil, nil},
		{"equal singletons", []uint64{5}, []uint64{5}, []uint64{5}},
		{"different singletons", []uint64{5}, []uint64{6}, nil},
		{"disjoint ranges", []uint64{1, 2, 3}, []uint64{10, 11}, nil},
		{"interleaved disjoint", []uint64{1, 3, 5, 7}, []uint64{2, 4, 6, 8}, nil},
		{"touching ends", []uint64{1, 2, 3}, []uint64{3, 4, 5}, []uint64{3}},
		{"first common is smallest", []uint64{2, 4, 9, 12}, []uint64{1, 9, 12}, []uint64{9, 12}},
		{"subset", []uint64{4, 5, 6}, []uint64{1, 2, 3, 4, 5, 6, 7}, []uint64{4, 5, 6}},
		{"small vs big, hit at end", []uint64{9999}, seqPages(0, 1, 10000), []uint64{9999}},
		{"small vs big, miss between", []uint64{1, 3, 5}, seqPages(0, 2, 10000), nil},
		{"small vs big, hit in middle", []uint64{1, 3, 5000}, seqPages(0, 2, 10000), []uint64{5000}},
		{"big vs big, one common", append(seqPages(0, 2, 50000), 100001), seqPages(100001, 1, 50000), []uint64{100001}},
		{"extremes", []uint64{0, ^uint64(0)}, []uint64{^uint64(0)}, []uint64{^uint64(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewPageSet(tt.a...), NewPageSet(tt.b...)
			for _, order := range [][2]PageSet{{a, b}, {b, a}} {
				x, y := order[0], order[1]
				p, ok := x.FirstCommon(y)
				wantOK := len(tt.wantCommon) > 0
				if ok != wantOK || (ok && p != tt.wantCommon[0]) {
					t.Errorf("FirstCommon = %#x, %v; want %v", p, ok, tt.wantCommon)
				}
				if x.Intersects(y) != wantOK {
					t.Errorf("Intersects = %v, want %v", !wantOK, wantOK)
				}
				if got := x.Intersect(y); !slices.Equal(got.Pages(), tt.wantCommon) {
					t.Errorf("Intersect = %v, want %v", got, tt.wantCommon)
				}
				u := x.Union(y)
				want := NewPageSet(append(slices.Clone(tt.a), tt.b...)...)
				if !u.Equal(want) {
					t.Errorf("Union = %v, want %v", u, want)
				}
			}
		})
	}
}

// TestPageSetRandom compares FirstCommon and Union with naive versions on
// random sets of very different sizes, so both the merge and the
// binary-search path are exercised.
func TestPageSetRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 7, 40, 600, 5000}
	for range 6 {
		for _, na := range sizes {
			for _, nb := range sizes {
				span := uint64(1 + r.IntN(4*(na+nb)+1))
				a := make([]uint64, na)
				for i := range a {
					a[i] = r.Uint64N(span)
				}
				b := make([]uint64, nb)
				for i := range b {
					b[i] = r.Uint64N(span)
				}
				sa, sb := NewPageSet(a...), NewPageSet(b...)
				p, ok := sa.FirstCommon(sb)
				wp, wok := naiveCommon(a, b)
				if ok != wok || p != wp {
					t.Fatalf("FirstCommon(%v, %v) = %#x,%v; want %#x,%v", sa, sb, p, ok, wp, wok)
				}
				if got, want := sa.Intersect(sb).Len() > 0, wok; got != want {
					t.Fatalf("Intersect non-empty = %v, want %v", got, want)
				}
			}
		}
	}
}

func TestPageOfFalseSharing(t *testing.T) {
	tests := []struct {
		a, b uint64
		same bool
	}{
		{0x1008, 0x1010, true},
		{0x1000, 0x1fff, true},
		{0x1fff, 0x2000, false},
		{0, PageSize, false},
	}
	for _, tt := range tests {
		if got := PageOf(tt.a) == PageOf(tt.b); got != tt.same {
			t.Errorf("PageOf(%#x) == PageOf(%#x): %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

func TestPageSetString(t *testing.T) {
	if got, want := NewPageSet(1, 16).String(), "{0x1, 0x10}"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	big := NewPageSet(seqPages(0, 1, 100)...).String()
	if want := "{0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, ...84 more..., 0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63}"; big != want {
		t.Errorf("String = %q, want %q", big, want)
	}
}
