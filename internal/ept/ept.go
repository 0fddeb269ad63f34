package ept

import (
	"errors"
	"fmt"
	"sort"
)

// PageSize is the tracking granularity: the host and guest base page.
const PageSize = 4096

// Sets are the pages one chunk accessed, as page indexes into the guest
// memory memfd (offset / PageSize; with the view attached at GPA 0 this is
// the guest frame number), sorted ascending, without duplicates.
type Sets struct {
	// Read holds every page the chunk accessed, read or written: at page
	// granularity a written page may also have been read, so a conflict
	// check against another chunk's writes needs all of them.
	Read []uint64
	// Write holds the pages the chunk wrote (a subset of Read).
	Write []uint64
}

// Tracker is a page-tracking backend: it makes one View per vCPU.
type Tracker interface {
	// Name is the backend's name, as Backends lists it.
	Name() string
	// NewView maps the first size bytes of the canonical guest memory
	// memfd as a private view for one vCPU (one KVM VM).
	NewView(memfd int, size uint64) (View, error)
}

// View is one vCPU's isolated view of canonical guest memory. Its
// lifecycle per chunk is Begin, the vCPU runs, End, then Commit or
// Discard. A View is used by one goroutine at a time; Commit of different
// views may run concurrently (the caller orders commits of overlapping
// pages).
type View interface {
	// Mem is the host mapping of the view: guest memory as this vCPU sees
	// it. Host code that emulates a device access for this vCPU during a
	// chunk reads and writes here, and is tracked like the guest.
	Mem() []byte
	// Attach registers the view as memslot slot at guest physical address
	// gpa of the KVM VM vmFD, with the memslot flags the backend needs.
	// Call it once, before the first Begin.
	Attach(vmFD int, slot uint32, gpa uint64) error
	// Begin starts a chunk. The view then maps nothing: the chunk's first
	// access to each page faults, and that is what End reports.
	Begin() error
	// End ends the chunk and returns its page sets. The chunk's writes
	// stay private to the view until Commit.
	End() (Sets, error)
	// Commit copies the chunk's private copies of pages (sorted page
	// indexes, a subset of End's Write; nil: all of Write) to canonical
	// memory, then drops the view's pages as Discard does.
	Commit(pages []uint64) error
	// Discard drops the chunk's private pages (squash): the view reads
	// canonical memory again. Valid in any state; after it, Begin.
	Discard() error
	// Close unmaps the view. It does not delete the memslot.
	Close() error
}

// Prober is a View that can tell, while its chunk still runs, whether the
// chunk has touched given pages: a chunk that touched a page another chunk
// has since committed will be squashed at its commit, so the recorder can
// stop it at once (an early conflict) instead of letting it run on.
type Prober interface {
	// Touched reports whether the running chunk has touched any of pages
	// (sorted page indexes). Safe to call concurrently with the vCPU
	// running; a touch after the call is not reported.
	Touched(pages []uint64) (bool, error)
}

// Errors.
var (
	// ErrState is returned by a View method called out of order.
	ErrState = errors.New("ept: view method called in the wrong state")
	// ErrNotWritten is returned by Commit for a page not in the write set.
	ErrNotWritten = errors.New("ept: commit of a page the chunk did not write")
	// ErrUnknownBackend is returned by New for a name Backends does not list.
	ErrUnknownBackend = errors.New("ept: unknown backend")
)

// SysError is a failed system call or ioctl, with its errno.
type SysError struct {
	Op  string // the call, e.g. "KVM_GET_DIRTY_LOG"
	Err error  // the errno
}

func (e *SysError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *SysError) Unwrap() error { return e.Err }

// Backend names.
const (
	// PrivatePagemap: MAP_PRIVATE view, sets from PAGEMAP_SCAN, view
	// registered with userfaultfd (WP mode) so that the sets are exact.
	PrivatePagemap = "private-pagemap"
	// PrivatePagemapFaultAround: the same without the userfaultfd
	// registration: shmem fault-around inflates the read set.
	PrivatePagemapFaultAround = "private-pagemap-faultaround"
	// DirtyLog: the private view for isolation and the read set, KVM dirty
	// logging for the write set.
	DirtyLog = "dirtylog"
)

// BackendInfo says whether a backend works on this host.
type BackendInfo struct {
	Name      string `json:"name"`
	Supported bool   `json:"supported"`
	// Exact is true when the backend's sets have no extra pages beyond
	// the documented ones (guest page tables, code).
	Exact bool `json:"exact"`
	// Reason says why it is unsupported, or what it costs.
	Reason string `json:"reason"`
}

// backends in order of preference for Default: fastest correct first
// (measured, see the package comment).
var backends = []struct {
	name  string
	exact bool
	make  func() Tracker
	check func() error
	note  string
}{
	{PrivatePagemap, true, func() Tracker { return &privateTracker{name: PrivatePagemap, uffdWP: true} }, checkPrivate(true),
		"MAP_PRIVATE view + PAGEMAP_SCAN, userfaultfd-WP registered (no fault-around): exact sets"},
	{DirtyLog, true, func() Tracker { return &dirtyLogTracker{privateTracker{name: DirtyLog, uffdWP: true}} }, checkDirtyLog,
		"private view + KVM_GET_DIRTY_LOG write set; host writes to the view are not in the write set"},
	{PrivatePagemapFaultAround, false, func() Tracker { return &privateTracker{name: PrivatePagemapFaultAround} }, checkPrivate(false),
		"MAP_PRIVATE view + PAGEMAP_SCAN without userfaultfd: read set inflated by shmem fault-around"},
}

// Backends lists every backend with whether this host supports it.
func Backends() []BackendInfo {
	out := make([]BackendInfo, 0, len(backends))
	for _, b := range backends {
		i := BackendInfo{Name: b.name, Supported: true, Exact: b.exact, Reason: b.note}
		if err := b.check(); err != nil {
			i.Supported, i.Reason = false, err.Error()
		}
		out = append(out, i)
	}
	return out
}

// New returns the named backend, or an error saying why this host cannot
// run it.
func New(name string) (Tracker, error) {
	for _, b := range backends {
		if b.name == name {
			if err := b.check(); err != nil {
				return nil, fmt.Errorf("ept backend %s: %w", name, err)
			}
			return b.make(), nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownBackend, name)
}

// DefaultName is the backend Default picks on this host: the fastest
// supported backend with exact sets, or "" if none.
func DefaultName() string {
	for _, b := range backends {
		if b.exact && b.check() == nil {
			return b.name
		}
	}
	return ""
}

// Default returns the backend DefaultName names.
func Default() (Tracker, error) {
	n := DefaultName()
	if n == "" {
		return nil, errors.New("ept: no exact page tracker works on this host (see samsara probe)")
	}
	return New(n)
}

// subsetSorted reports whether every element of a is in b (both sorted).
func subsetSorted(a, b []uint64) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
	}
	return true
}

// isSorted reports whether p is strictly ascending.
func isSorted(p []uint64) bool {
	return sort.SliceIsSorted(p, func(i, j int) bool { return p[i] < p[j] }) && !hasDup(p)
}

func hasDup(p []uint64) bool {
	for i := 1; i < len(p); i++ {
		if p[i] == p[i-1] {
			return true
		}
	}
	return false
}
