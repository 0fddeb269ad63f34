package ept

import "fmt"

// dirtyLogTracker makes private views (isolation, read set from
// PAGEMAP_SCAN) whose write set comes from KVM's dirty log of the memslot
// (KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG).
type dirtyLogTracker struct{ privateTracker }

func (t *dirtyLogTracker) NewView(memfd int, size uint64) (View, error) {
	pv, err := t.privateTracker.newView(memfd, size)
	if err != nil {
		return nil, err
	}
	words := (size/PageSize + 63) / 64 // one bit per page, in 64-bit words
	return &dirtyLogView{privateView: pv, vmFD: -1, bitmap: make([]uint64, words)}, nil
}

// dirtyLogView is a privateView whose write set is KVM's dirty log. The
// dirty log records what the guest wrote through KVM; writes the host
// makes to the view (device emulation) are not in it, and
// pagemapWrite keeps the view's own answer for comparison.
type dirtyLogView struct {
	*privateView
	vmFD   int      // the VM the view is attached to
	slot   uint32   // its memslot
	bitmap []uint64 // KVM_GET_DIRTY_LOG buffer, one bit per page
	// pagemapWrite is the write set the page tables gave at the last End.
	pagemapWrite []uint64
}

func (v *dirtyLogView) Attach(vmFD int, slot uint32, gpa uint64) error {
	if err := setMemoryRegion(vmFD, slot, kvmMemLogDirtyPages, gpa, v.size, sliceAddr(v.mem)); err != nil {
		return err
	}
	v.vmFD, v.slot = vmFD, slot
	return nil
}

// AttachRange is not supported: the dirty log is read per memslot, and
// this backend keeps one.
func (v *dirtyLogView) AttachRange(vmFD int, slot uint32, gpa, off, size uint64) error {
	return fmt.Errorf("ept: %s tracks one memslot; it cannot back a guest with a memory hole", DirtyLog)
}

func (v *dirtyLogView) Begin() error {
	if v.vmFD < 0 {
		return fmt.Errorf("dirtylog Begin before Attach: %w", ErrState)
	}
	return v.privateView.Begin()
}

func (v *dirtyLogView) End() (Sets, error) {
	if v.state != stateRunning {
		return Sets{}, fmt.Errorf("End in state %d: %w", v.state, ErrState)
	}
	if err := v.harvest(); err != nil {
		return Sets{}, err
	}
	if err := getDirtyLog(v.vmFD, v.slot, v.bitmap); err != nil {
		return Sets{}, err
	}
	v.pagemapWrite = v.sets.Write
	v.sets.Write = bitmapPages(nil, v.bitmap)
	v.state = stateEnded
	return v.sets, nil
}

func (v *dirtyLogView) Discard() error {
	if v.state == stateRunning && v.vmFD >= 0 {
		// Clear the log of the abandoned chunk.
		if err := getDirtyLog(v.vmFD, v.slot, v.bitmap); err != nil {
			return err
		}
	}
	return v.privateView.Discard()
}
