package commit

import (
	"fmt"
	"slices"
	"strings"
)

// PageShift is log2 of the conflict granularity: one 4 KiB guest page, the
// unit in which the page trackers (pagemap over a private view, dirty logs,
// page protection) report accesses. Two accesses to different bytes of one
// page are the same page to commit ("false sharing" is a conflict).
const PageShift = 12

// PageSize is the conflict granularity in bytes.
const PageSize = 1 << PageShift

// PageOf returns the number of the page that holds guest physical address
// addr.
func PageOf(addr uint64) uint64 { return addr >> PageShift }

// PageSet is an immutable set of page numbers, kept as a strictly ascending
// slice. A sorted slice is what the trackers produce naturally (a pagemap
// scan walks the view in address order), costs 8 bytes a page, and
// intersects in O(n+m) by merging, or O(small·log big) by binary search
// when one set is much smaller than the other — the common case of a short
// chunk against a long one. The zero value is the empty set.
type PageSet struct {
	// pages is strictly ascending; it is never modified after construction
	// (sets are shared between the committer and concurrent checkers).
	pages []uint64
}

// NewPageSet returns the set of the given pages, in any order, duplicates
// allowed. It copies its argument.
func NewPageSet(pages ...uint64) PageSet {
	if len(pages) == 0 {
		return PageSet{}
	}
	p := slices.Clone(pages)
	slices.Sort(p)
	return PageSet{pages: slices.Compact(p)}
}

// PageSetFromSorted returns the set whose elements are pages, which must be
// strictly ascending. It takes ownership of pages (no copy): the caller must
// not modify the slice afterwards. This is the cheap constructor for a
// tracker that scans memory in address order.
func PageSetFromSorted(pages []uint64) (PageSet, error) {
	for i := 1; i < len(pages); i++ {
		if pages[i] <= pages[i-1] {
			return PageSet{}, fmt.Errorf("page set not strictly ascending at index %d: %#x after %#x", i, pages[i], pages[i-1])
		}
	}
	return PageSet{pages: pages}, nil
}

// Len returns the number of pages in s.
func (s PageSet) Len() int { return len(s.pages) }

// Empty reports whether s has no pages.
func (s PageSet) Empty() bool { return len(s.pages) == 0 }

// Pages returns the pages of s in ascending order. The slice is shared with
// s and must not be modified.
func (s PageSet) Pages() []uint64 { return s.pages }

// Contains reports whether page p is in s.
func (s PageSet) Contains(p uint64) bool {
	_, found := slices.BinarySearch(s.pages, p)
	return found
}

// Equal reports whether s and o hold the same pages.
func (s PageSet) Equal(o PageSet) bool { return slices.Equal(s.pages, o.pages) }

// Intersects reports whether s and o have a page in common.
func (s PageSet) Intersects(o PageSet) bool {
	_, ok := s.FirstCommon(o)
	return ok
}

// gallopRatio is the size ratio above which FirstCommon binary-searches the
// larger set for each page of the smaller instead of merging: merging costs
// n+m steps, searching n·log2(m); with m/n = 16 and m up to 2^17 pages the
// two are about equal, so above it searching wins.
const gallopRatio = 16

// FirstCommon returns the smallest page that s and o have in common, and
// whether there is one.
func (s PageSet) FirstCommon(o PageSet) (uint64, bool) {
	a, b := s.pages, o.pages
	if len(a) == 0 || len(b) == 0 {
		return 0, false
	}
	// Disjoint ranges: the common case for vCPUs working in different
	// regions of memory, answered in O(1).
	if a[len(a)-1] < b[0] || b[len(b)-1] < a[0] {
		return 0, false
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)/len(a) >= gallopRatio {
		// Search each page of the small set in the part of the big set
		// that is still ahead (both are ascending, so b only shrinks).
		for _, p := range a {
			i, found := slices.BinarySearch(b, p)
			if found {
				return p, true
			}
			b = b[i:]
			if len(b) == 0 {
				return 0, false
			}
		}
		return 0, false
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			return a[i], true
		}
	}
	return 0, false
}

// Intersect returns the pages that are in both s and o.
func (s PageSet) Intersect(o PageSet) PageSet {
	a, b := s.pages, o.pages
	var out []uint64
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return PageSet{pages: out}
}

// Union returns the pages that are in s or o (or both).
func (s PageSet) Union(o PageSet) PageSet {
	a, b := s.pages, o.pages
	if len(a) == 0 {
		return o
	}
	if len(b) == 0 {
		return s
	}
	out := make([]uint64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	out = append(out, b[j:]...)
	return PageSet{pages: out}
}

// String formats s as {0x1, 0x2, ...}, eliding the middle of large sets.
func (s PageSet) String() string {
	const show = 8 // pages shown at each end of a large set
	var sb strings.Builder
	sb.WriteByte('{')
	for i, p := range s.pages {
		if len(s.pages) > 2*show && i >= show && i < len(s.pages)-show {
			if i == show {
				fmt.Fprintf(&sb, ", ...%d more...", len(s.pages)-2*show)
			}
			continue
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%#x", p)
	}
	sb.WriteByte('}')
	return sb.String()
}
