package pmc

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Events counted for guest progress.
const (
	// RawRetiredCondBranches is AMD Zen's "retired conditional branches"
	// (PPR event 0xd1), the counter rr uses on Zen because it is exact.
	RawRetiredCondBranches = 0xd1
)

// OpenCounter opens a per-thread counter on the calling OS thread (tid 0 =
// self), counting user mode only and starting disabled. typ is
// unix.PERF_TYPE_HARDWARE or unix.PERF_TYPE_RAW.
func OpenCounter(typ uint32, config uint64, tid int) (int, error) {
	return openEvent(unix.PerfEventAttr{Type: typ, Config: config,
		Bits: unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv}, tid, "user only")
}

// openEvent is perf_event_open of attr on thread tid (0 = self), any CPU,
// close-on-exec; what names the event's mode in an error.
func openEvent(attr unix.PerfEventAttr, tid int, what string) (int, error) {
	attr.Size = uint32(unsafe.Sizeof(unix.PerfEventAttr{}))
	fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("perf_event_open(type %d, config %#x, %s): %w", attr.Type, attr.Config, what, err)
	}
	return fd, nil
}

// ReadCounter returns a counter's value.
func ReadCounter(fd int) (uint64, error) {
	var b [8]byte
	if _, err := unix.Read(fd, b[:]); err != nil {
		return 0, fmt.Errorf("read perf counter: %w", err)
	}
	return *(*uint64)(unsafe.Pointer(&b[0])), nil
}

// idlePeriod is the sample period of a progress counter with no overflow
// armed. The counter must be a sampling event from the start, because
// PERF_EVENT_IOC_PERIOD is refused on a counting-only event. The x86 PMU
// clamps a period to its 48-bit counter width, so an idle counter still
// overflows every 2^47 branches (hours of guest time); with no signal armed
// that only costs one PMU interrupt.
const idlePeriod = 1 << 62

// openProgressCounter opens the retired-conditional-branch counter of the
// calling thread for Counter: user mode only (guest CPL3 under PVM), pinned
// (it never shares a PMU slot by multiplexing, which would lose events; a
// pinned event that cannot be scheduled reads as EOF instead), disabled
// until Counter.Run enables it, and sampling so an overflow can be armed.
func openProgressCounter() (int, error) {
	return openEvent(unix.PerfEventAttr{Type: unix.PERF_TYPE_RAW, Config: RawRetiredCondBranches, Sample: idlePeriod,
		Bits: unix.PerfBitDisabled | unix.PerfBitPinned | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv}, 0, "user only, pinned")
}

// OpenGuestBranchCounter opens the PMU backend's counter on thread tid
// (0 = self): raw event config (PMUEvent.Config) in guest user and kernel
// mode, the host excluded (exclude_host: only while the thread runs a
// guest under VMX/SVM), starting disabled. Only probe opens it so far.
func OpenGuestBranchCounter(config uint64, tid int) (int, error) {
	return openEvent(unix.PerfEventAttr{Type: unix.PERF_TYPE_RAW, Config: config,
		Bits: unix.PerfBitDisabled | unix.PerfBitExcludeHost | unix.PerfBitPinned}, tid, "exclude_host, pinned")
}
