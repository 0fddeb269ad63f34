package ept

import (
	"fmt"
	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"sync"

	"golang.org/x/sys/unix"
)

// checkPrivate returns the support check of the private-view backends:
// a memfd view can be made (with the userfaultfd WP registration if
// uffdWP) and its page sets read.
func checkPrivate(uffdWP bool) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = tryView(&privateTracker{uffdWP: uffdWP}, false) })
		return err
	}
}

// checkDirtyLog is the support check of the dirtylog backend: the private
// view works and KVM accepts a dirty-logged memslot on it and returns its
// log.
var checkDirtyLog = func() func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			err = tryView(&dirtyLogTracker{privateTracker{uffdWP: true}}, true)
		})
		return err
	}
}()

// probePages is the size of the memfd the support checks use.
const probePages = 4

// tryView makes a small view, runs an empty chunk (attached to a fresh
// KVM VM if kvm), and drops it.
func tryView(t Tracker, kvm bool) (err error) {
	fd, err := unix.MemfdCreate("samsara-ept-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return &SysError{Op: "memfd_create", Err: err}
	}
	defer unix.Close(fd)
	size := uint64(probePages * PageSize)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return &SysError{Op: "ftruncate memfd", Err: err}
	}
	v, err := t.NewView(fd, size)
	if err != nil {
		return err
	}
	defer v.Close()
	if kvm {
		sys, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return &SysError{Op: "open /dev/kvm", Err: err}
		}
		defer unix.Close(sys)
		vm, err := kvmsys.CreateVM(sys)
		if err != nil {
			return &SysError{Op: "KVM_CREATE_VM", Err: err}
		}
		defer unix.Close(vm)
		if err := v.Attach(vm, 0, 0); err != nil {
			return err
		}
	}
	v.Mem()[0] = 1 // one written page, so the scan has something to report
	if err := v.Begin(); err != nil {
		return err
	}
	if _, err := v.End(); err != nil {
		return err
	}
	if err := v.Discard(); err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	return nil
}
