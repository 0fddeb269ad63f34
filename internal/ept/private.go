package ept

import (
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/sys/unix"
)

// privateTracker makes MAP_PRIVATE views of the memfd whose page sets come
// from the process page tables (PAGEMAP_SCAN on /proc/self/pagemap).
type privateTracker struct {
	name string
	// uffdWP registers each view with userfaultfd in write-protect mode
	// (nothing protected) to turn off fault-around.
	uffdWP bool
	// usePread reads the sets with pread of /proc/self/pagemap (one 8-byte
	// entry per page of the whole view) instead of PAGEMAP_SCAN; kept to
	// compare the two in the benchmarks, and as the fallback for kernels
	// before 6.7 (PAGEMAP_SCAN fails with ENOTTY there).
	usePread bool
	// dropAll drops the whole view with one MADV_DONTNEED at Commit and
	// Discard instead of only the ranges End found present; kept to
	// compare the two in the benchmarks.
	dropAll bool
}

func (t *privateTracker) Name() string { return t.name }

func (t *privateTracker) NewView(memfd int, size uint64) (View, error) {
	return t.newView(memfd, size)
}

// viewState is where a view is in its chunk lifecycle.
type viewState int

const (
	stateIdle    viewState = iota // between chunks: the view maps nothing
	stateRunning                  // Begin was called: the vCPU may run
	stateEnded                    // End was called: sets known, Commit or Discard next
)

// span is a run [start, end) of page indexes.
type span struct{ start, end uint64 }

// scanBatch is the number of page_region entries PAGEMAP_SCAN fills per
// call; a chunk whose present pages form more runs takes several calls.
const scanBatch = 512

// privateView is a MAP_PRIVATE view of the memfd: guest writes land in
// private copy-on-write (anonymous) pages; reads map the shared page-cache
// page. Present = touched, present and anonymous = written.
type privateView struct {
	t     *privateTracker
	size  uint64
	mem   []byte // the MAP_PRIVATE view, registered as the memslot
	canon []byte // a MAP_SHARED mapping of the memfd, for Commit
	uffd  int    // userfaultfd holding the WP registration, or -1
	pm    int    // /proc/self/pagemap

	state   viewState
	sets    Sets         // the last End's sets
	present []span       // runs present at the last End: what a reset drops
	regions []pageRegion // PAGEMAP_SCAN buffer
	entries []uint64     // pread buffer (usePread)
}

func (t *privateTracker) newView(memfd int, size uint64) (*privateView, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("ept: view size %#x is not a positive multiple of %d", size, PageSize)
	}
	v := &privateView{t: t, size: size, uffd: -1, pm: -1}
	var err error
	if v.mem, err = unix.Mmap(memfd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE); err != nil {
		return nil, &SysError{Op: "mmap MAP_PRIVATE view", Err: err}
	}
	// Transparent huge pages would make one touch map (and report) 512
	// pages.
	if err = unix.Madvise(v.mem, unix.MADV_NOHUGEPAGE); err != nil {
		v.Close()
		return nil, &SysError{Op: "madvise(MADV_NOHUGEPAGE)", Err: err}
	}
	if v.canon, err = unix.Mmap(memfd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		v.Close()
		return nil, &SysError{Op: "mmap MAP_SHARED canonical", Err: err}
	}
	if t.uffdWP {
		if v.uffd, err = newUffdWP(sliceAddr(v.mem), size); err != nil {
			v.Close()
			return nil, err
		}
	}
	if v.pm, err = unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		v.Close()
		return nil, &SysError{Op: "open /proc/self/pagemap", Err: err}
	}
	v.regions = make([]pageRegion, scanBatch)
	return v, nil
}

func (v *privateView) Mem() []byte { return v.mem }

func (v *privateView) Attach(vmFD int, slot uint32, gpa uint64) error {
	return setMemoryRegion(vmFD, slot, 0, gpa, v.size, sliceAddr(v.mem))
}

// AttachRange registers the part [off, off+size) of the view as memslot
// slot at guest physical address gpa: for guests whose RAM has holes (the
// PC's 640 KiB-1 MiB window). Sets still index pages by memfd offset.
func (v *privateView) AttachRange(vmFD int, slot uint32, gpa, off, size uint64) error {
	if off+size > v.size || off%PageSize != 0 || size%PageSize != 0 {
		return fmt.Errorf("ept: memslot range %#x+%#x outside the %#x-byte view", off, size, v.size)
	}
	return setMemoryRegion(vmFD, slot, 0, gpa, size, sliceAddr(v.mem)+uintptr(off))
}

func (v *privateView) Begin() error {
	if v.state != stateIdle {
		return fmt.Errorf("Begin in state %d: %w", v.state, ErrState)
	}
	v.state = stateRunning
	return nil
}

func (v *privateView) End() (Sets, error) {
	if v.state != stateRunning {
		return Sets{}, fmt.Errorf("End in state %d: %w", v.state, ErrState)
	}
	if err := v.harvest(); err != nil {
		return Sets{}, err
	}
	v.state = stateEnded
	return v.sets, nil
}

// harvest fills v.sets and v.present from the view's page tables.
func (v *privateView) harvest() error {
	v.sets = Sets{}
	v.present = v.present[:0]
	if v.t.usePread {
		return v.harvestPread()
	}
	base := sliceAddr(v.mem)
	start, end := base, base+uintptr(v.size)
	for start < end {
		n, walkEnd, err := scanPresent(v.pm, start, end, v.regions)
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			// No PAGEMAP_SCAN (Linux < 6.7): read the entries instead.
			v.t.usePread = true
			v.sets, v.present = Sets{}, v.present[:0]
			return v.harvestPread()
		}
		if err != nil {
			return err
		}
		for _, r := range v.regions[:n] {
			s, e := uint64(uintptr(r.start)-base)/PageSize, uint64(uintptr(r.end)-base)/PageSize
			v.addPresent(s, e, r.categories&pageIsFile == 0)
		}
		if n < len(v.regions) || walkEnd <= start {
			break
		}
		start = walkEnd
	}
	return nil
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent  = 1 << 63 // page present in RAM
	pmFileOrSh = 1 << 61 // page is file-backed or shared-anonymous
)

func (v *privateView) harvestPread() error {
	n := v.size / PageSize
	if uint64(len(v.entries)) != n {
		v.entries = make([]uint64, n)
	}
	if err := readPagemap(v.pm, sliceAddr(v.mem), v.entries); err != nil {
		return err
	}
	for i, e := range v.entries {
		if e&pmPresent != 0 {
			v.addPresent(uint64(i), uint64(i)+1, e&pmFileOrSh == 0)
		}
	}
	return nil
}

// addPresent records pages [s, e) as touched, and written if anon.
func (v *privateView) addPresent(s, e uint64, anon bool) {
	if k := len(v.present); k > 0 && v.present[k-1].end == s {
		v.present[k-1].end = e
	} else {
		v.present = append(v.present, span{s, e})
	}
	for p := s; p < e; p++ {
		v.sets.Read = append(v.sets.Read, p)
		if anon {
			v.sets.Write = append(v.sets.Write, p)
		}
	}
}

// Touched reports whether the running chunk has touched any of pages
// (sorted page indexes), from their pagemap entries: the early conflict
// check of a chunk that is still running (the Prober interface). It may be
// called from another goroutine while the view's vCPU runs; a page the
// vCPU touches after the read is not reported (the commit check sees it).
func (v *privateView) Touched(pages []uint64) (bool, error) {
	var buf [64]uint64
	base := sliceAddr(v.mem)
	for i := 0; i < len(pages); {
		// One pread per run of consecutive pages, up to len(buf).
		j := i + 1
		for j < len(pages) && j-i < len(buf) && pages[j] == pages[j-1]+1 {
			j++
		}
		if pages[j-1] >= v.size/PageSize {
			return false, fmt.Errorf("ept: page %d outside the %#x-byte view", pages[j-1], v.size)
		}
		e := buf[:j-i]
		if err := readPagemap(v.pm, base+uintptr(pages[i]*PageSize), e); err != nil {
			return false, err
		}
		for _, x := range e {
			if x&pmPresent != 0 {
				return true, nil
			}
		}
		i = j
	}
	return false, nil
}

func (v *privateView) Commit(pages []uint64) error {
	if v.state != stateEnded {
		return fmt.Errorf("Commit in state %d: %w", v.state, ErrState)
	}
	if pages == nil {
		pages = v.sets.Write
	} else if !isSorted(pages) || !subsetSorted(pages, v.sets.Write) {
		return ErrNotWritten
	}
	for _, p := range pages {
		o := p * PageSize
		copy(v.canon[o:o+PageSize], v.mem[o:o+PageSize])
	}
	return v.reset(false)
}

// Discard drops every page of the view, not only those End found: after
// End the vCPU may still touch memory before the squash restores it (the
// parallel recorder completes the exit's pending I/O first), and a page
// left private would hide canonical memory from every later chunk.
func (v *privateView) Discard() error {
	return v.reset(true)
}

// reset drops every page the view maps (private copies and page-cache
// mappings alike; KVM's mappings of them go too, through the MMU
// notifier), so the next chunk faults on each first access again. After
// End only the runs End found present are dropped, unless all.
func (v *privateView) reset(all bool) error {
	v.state = stateIdle
	if all || v.t.dropAll {
		if err := unix.Madvise(v.mem, unix.MADV_DONTNEED); err != nil {
			return &SysError{Op: "madvise(MADV_DONTNEED) view", Err: err}
		}
		return nil
	}
	for _, s := range v.present {
		if err := unix.Madvise(v.mem[s.start*PageSize:s.end*PageSize], unix.MADV_DONTNEED); err != nil {
			return &SysError{Op: "madvise(MADV_DONTNEED) range", Err: err}
		}
	}
	return nil
}

func (v *privateView) Close() error {
	var errs []error
	for _, m := range [][]byte{v.mem, v.canon} {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	v.mem, v.canon = nil, nil
	for _, fd := range []*int{&v.uffd, &v.pm} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// bitmapPages appends the indexes of the set bits of bm to dst.
func bitmapPages(dst []uint64, bm []uint64) []uint64 {
	for w, word := range bm {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			dst = append(dst, uint64(w)*64+uint64(b))
			word &= word - 1
		}
	}
	return dst
}
