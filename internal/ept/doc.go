// Package ept tracks the pages each vCPU's chunk touches and isolates the
// chunk's writes until commit: the userspace replacement for Samsara's
// in-kernel EPT walk.
//
// # Model
//
// Canonical guest memory is a memfd. Each vCPU runs in its own KVM VM whose
// one memslot is that vCPU's View: a MAP_PRIVATE mapping of the memfd.
// Guest writes land in private copy-on-write pages, invisible to canonical
// memory and to other views until Commit copies them back. At Begin the
// view maps nothing, so the chunk's first access to each page faults; at
// End the process page tables of the view give the sets: present =
// accessed (Sets.Read), present and anonymous = written (Sets.Write).
// Commit copies the written pages to canonical memory through a MAP_SHARED
// mapping and drops every page the view maps (MADV_DONTNEED over the runs
// End found present; KVM drops its mappings of them through the MMU
// notifier); Discard (squash) drops them without copying.
//
// # Backends (Backends, New, Default)
//
//   - private-pagemap (the default): sets from the PAGEMAP_SCAN ioctl on
//     /proc/self/pagemap (Linux 6.7+; pread of the pagemap entries as the
//     fallback). The view is registered with userfaultfd in write-protect
//     mode with nothing protected: an armed VMA gets no fault-around
//     (a read fault on shmem otherwise maps up to 16 neighbouring pages,
//     and MADV_RANDOM does not stop it), so the sets are exact.
//   - private-pagemap-faultaround: the same without userfaultfd. Measured:
//     a 4-page access pattern reports every page of its aligned 16-page
//     windows (48 pages read for 10 touched); not exact, never chosen by
//     Default; kept to measure the difference.
//   - dirtylog: the private view for isolation and the read set, and the
//     memslot flagged KVM_MEM_LOG_DIRTY_PAGES with KVM_GET_DIRTY_LOG for
//     the write set. It works under PVM and gives the same write set as
//     the page tables for guest writes (including the accessed/dirty bits
//     KVM writes into guest page tables), but it cannot see writes the
//     host makes to the view (device emulation): those are private pages
//     the dirty log misses, so Commit would drop them. It is no faster.
//     Kept as the measured alternative, not the default.
//
// Not implemented: userfaultfd minor mode (reports each first access
// through a handler thread; the page tables already give the same set
// without a round trip per page) and mprotect/uffd-WP fault tracking
// (CREW, the paper's baseline; one host fault per page on top of KVM's).
//
// # Exactness (the conformance test)
//
// A guest reading A and B, writing C, reading and writing D, at CPL0 and
// CPL3, gets exactly Read = {code page, A, B, C, D} plus documented extras
// and Write = {C, D} plus documented extras, never a missing page:
//
//   - guest page-table pages (PML4, PDPT, PD) are read on every chunk's
//     walk (the reset makes KVM walk again), and written when accessed or
//     dirty bits get set: a real guest write;
//   - under PVM, every entry to guest CPL3 reads the guest TSS (the page at
//     TR.base; measured by moving TR.base, GDTR/IDTR/LDTR do not matter),
//     so CPL3 chunks read that page.
//
// # Page-table staleness (one VM per vCPU, shadow paging)
//
// Measured under PVM (TestPageTableStaleness): a CPL3 read through a PTE,
// then the PTE changed in canonical memory from outside the VM (as another
// vCPU's Commit does), then the read again:
//
//	rerun, no flush                          stale
//	KVM_SET_SREGS (MMU context reset)        stale
//	guest mov cr3 (TLB flush)                stale
//	guest invlpg of the address              stale
//	MADV_DONTNEED of the page-table page     stale
//	MADV_DONTNEED of an unrelated page       stale
//	MADV_DONTNEED of the old target page     fresh
//	MADV_DONTNEED of the whole view          fresh
//	memslot delete + re-add                  fresh
//
// So KVM's shadow page tables are not resynchronised from guest page-table
// contents changed around KVM, not even by a guest TLB flush: what resets
// a translation is the MMU-notifier invalidation of the *target* page's
// host mapping (the leaf shadow entry goes, and the next access walks the
// guest page tables again) or deleting the memslot. The reset after every
// Commit/Discard drops every page the chunk touched, so at Begin KVM holds
// no leaf translation at all and every translation the chunk uses is
// walked afresh from the guest page tables (which then appear in the read
// set). Within a chunk a translation can be stale only where another vCPU
// committed a change to a page-table page this chunk read: the conflict
// check (its write set against this chunk's read set) squashes that chunk.
// The caller must not keep pages mapped across chunks (no partial reset).
//
// # Cost
//
// Measured on this project's 2-core PVM machines: 64 MiB guest, a CPL3
// guest touching N consecutive pages, a quarter of them written
// (BenchmarkChunk, two runs of 200-300 chunks each on a shared machine, so
// ranges, not points):
//
//	                                    N=10       N=100      N=1000
//	guest run, per page touched         16-53 µs   9-19 µs    11-15 µs
//	End, PAGEMAP_SCAN                   5-11 µs    18-52 µs   225-520 µs
//	End, pread of all pagemap entries   34-52 µs   46-107 µs  237-790 µs
//	Commit (copy + ranged DONTNEED)     15-23 µs   50-78 µs   500-575 µs
//	Discard (ranged DONTNEED)           22-58 µs   48-116 µs  361 µs
//	whole-view DONTNEED instead         17-61 µs   40-93 µs   300-540 µs
//	dirtylog End (scan + GET_DIRTY_LOG) 7-90 µs    18-29 µs   285-425 µs
//	no uffd-WP: guest run per page      10-26 µs   7-17 µs    9-15 µs
//	no uffd-WP: pages in the read set   48         144        1040
//	with uffd-WP: pages in the read set 15         105        1005
//
// (Read sets include the code, page-table and TSS pages.) The first-touch
// fault (a shadow-paging fault in KVM plus a page-cache lookup or a copy-on-write) dominates: a chunk pays ~10 µs per distinct
// page it touches. Without the userfaultfd registration the run is
// somewhat cheaper per page (fault-around maps 16 pages per fault) but the
// read set is inflated up to 16x, which turns into false conflicts.
// PAGEMAP_SCAN costs in proportion to the pages present, pread of the
// entries in proportion to the view; at 64 MiB the scan is ahead for
// small chunks.
//
// PVM surprises: the TSS read on CPL3 entry (above); KVM_RUN is
// interrupted (EINTR) by Go's preemption signals during long chunks, the
// caller resumes; PAGEMAP_SCAN and userfaultfd WP on shmem work (kernel
// 6.18).
package ept
