package ept

// The raw system interfaces the backends use and golang.org/x/sys/unix does
// not wrap: userfaultfd registration, the PAGEMAP_SCAN ioctl, and the KVM
// memslot and dirty-log ioctls (gokvm's GetDirtyLog hides ENOENT, so it is
// not used). Every errno reaches the caller.

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd ABI (linux/userfaultfd.h).
const (
	uffdAPI               = 0xAA       // UFFD_API
	uffdioAPI             = 0xc018aa3f // UFFDIO_API: _IOWR(0xAA, 0x3F, struct uffdio_api) (24 bytes)
	uffdioRegister        = 0xc020aa00 // UFFDIO_REGISTER: _IOWR(0xAA, 0x00, struct uffdio_register) (32 bytes)
	uffdFeatureWPShmem    = 1 << 12    // UFFD_FEATURE_WP_HUGETLBFS_SHMEM: WP mode on shmem and hugetlbfs
	uffdFeatureMinorShmem = 1 << 10    // UFFD_FEATURE_MINOR_SHMEM: minor faults on shmem
	uffdRegisterModeWP    = 1 << 1     // UFFDIO_REGISTER_MODE_WP
)

type uffdioAPIArg struct {
	api, features, ioctls uint64
}

type uffdioRegisterArg struct {
	start, len, mode, ioctls uint64
}

// newUffdWP opens a userfaultfd and registers [addr, addr+size) with it in
// write-protect mode. Nothing is write-protected afterwards: the
// registration alone marks the VMA as userfaultfd-armed, and the kernel
// then does not map neighbouring pages on a read fault (fault-around is
// skipped for uffd-armed VMAs, see the package comment). The fd must stay
// open for as long as the registration is wanted.
func newUffdWP(addr uintptr, size uint64) (int, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return -1, &SysError{Op: "userfaultfd", Err: e}
	}
	api := uffdioAPIArg{api: uffdAPI, features: uffdFeatureWPShmem}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		unix.Close(int(fd))
		return -1, &SysError{Op: "UFFDIO_API(WP_HUGETLBFS_SHMEM)", Err: e}
	}
	reg := uffdioRegisterArg{start: uint64(addr), len: size, mode: uffdRegisterModeWP}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioRegister, uintptr(unsafe.Pointer(&reg))); e != 0 {
		unix.Close(int(fd))
		return -1, &SysError{Op: "UFFDIO_REGISTER(MODE_WP)", Err: e}
	}
	return int(fd), nil
}

// PAGEMAP_SCAN ABI (linux/fs.h, Linux 6.7+).
const (
	pagemapScan   = 0xc0606610 // PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg) (96 bytes)
	pageIsFile    = 1 << 2     // PAGE_IS_FILE: backed by a file (page cache), not anonymous
	pageIsPresent = 1 << 3     // PAGE_IS_PRESENT
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages uint64
	categoryInverted, categoryMask, categoryAnyofMask       uint64
	returnMask                                              uint64
}

// pageRegion is struct page_region: [start, end) with the categories of
// every page in it.
type pageRegion struct {
	start, end, categories uint64
}

// scanPresent fills vec with the present regions of [start, end) of this
// process (PAGEMAP_SCAN on an open /proc/self/pagemap), each tagged with
// PAGE_IS_FILE or not. It returns the regions filled and where the walk
// stopped (end when it finished; less when vec was full).
func scanPresent(pagemapFD int, start, end uintptr, vec []pageRegion) (int, uintptr, error) {
	arg := pmScanArg{
		size:         uint64(unsafe.Sizeof(pmScanArg{})),
		start:        uint64(start),
		end:          uint64(end),
		vec:          uint64(uintptr(unsafe.Pointer(&vec[0]))),
		vecLen:       uint64(len(vec)),
		categoryMask: pageIsPresent,
		returnMask:   pageIsPresent | pageIsFile,
	}
	n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(pagemapFD), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return 0, 0, &SysError{Op: "PAGEMAP_SCAN", Err: e}
	}
	return int(n), uintptr(arg.walkEnd), nil
}

// readPagemap reads the 8-byte /proc/self/pagemap entries of the pages
// from addr on into buf (one entry per page).
func readPagemap(pagemapFD int, addr uintptr, buf []uint64) error {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	off := int64(addr/PageSize) * 8 // one 8-byte entry per virtual page
	for len(b) > 0 {
		n, err := unix.Pread(pagemapFD, b, off)
		if err != nil {
			return &SysError{Op: "pread /proc/self/pagemap", Err: err}
		}
		if n == 0 {
			return &SysError{Op: "pread /proc/self/pagemap", Err: unix.EIO}
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// KVM memslot ABI (linux/kvm.h).
const (
	kvmSetUserMemoryRegion = 0x4020ae46 // _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region) (32 bytes)
	kvmGetDirtyLog         = 0x4010ae42 // _IOW(KVMIO, 0x42, struct kvm_dirty_log) (16 bytes)
	kvmMemLogDirtyPages    = 1 << 0     // KVM_MEM_LOG_DIRTY_PAGES
)

type memoryRegion struct {
	slot, flags               uint32
	guestPhysAddr, memorySize uint64
	userspaceAddr             uint64
}

// setMemoryRegion is KVM_SET_USER_MEMORY_REGION; size 0 deletes the slot.
func setMemoryRegion(vmFD int, slot, flags uint32, gpa, size uint64, addr uintptr) error {
	r := memoryRegion{slot: slot, flags: flags, guestPhysAddr: gpa, memorySize: size, userspaceAddr: uint64(addr)}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(vmFD), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&r))); e != 0 {
		return &SysError{Op: "KVM_SET_USER_MEMORY_REGION", Err: e}
	}
	return nil
}

type dirtyLogArg struct {
	slot   uint32
	_      uint32
	bitmap uint64
}

// getDirtyLog is KVM_GET_DIRTY_LOG: bitmap receives one bit per page of
// the slot written since the last call, and KVM write-protects them again.
func getDirtyLog(vmFD int, slot uint32, bitmap []uint64) error {
	a := dirtyLogArg{slot: slot, bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(vmFD), kvmGetDirtyLog, uintptr(unsafe.Pointer(&a))); e != 0 {
		return &SysError{Op: "KVM_GET_DIRTY_LOG", Err: e}
	}
	return nil
}

// sliceAddr is the address of b's first byte.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
