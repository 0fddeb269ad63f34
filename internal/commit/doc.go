// Package commit orders the chunks of the parallel recorder: Samsara's
// decentralized three-phase commit (Ren et al., USENIX ATC 2016, §4), with
// squash, per-vCPU back-off and an exclusive fallback. It is pure Go: the
// vCPU goroutines call it between chunks, and it never touches KVM or guest
// memory itself.
//
// # Model
//
// Every vCPU runs its guest in bounded chunks, each in a private view of
// guest memory: reads see canonical memory (live, page by page, as the view
// faults it in), writes land in private copy-on-write pages. When a chunk
// ends, the page tracker reports the pages it read and the pages it wrote
// (the Chunk interface). The chunk then either enters the global total order
// (commit) and has its private pages copied back to canonical memory, or is
// squashed: the vCPU restores its registers from the chunk start, drops its
// private pages and runs the chunk again. The order of committed chunks plus
// the non-deterministic events each consumed is the recording.
//
// # Protocol
//
// Sequence numbers 1, 2, 3, ... name the positions in the total order.
// "ordered" is the last position handed out; "finished" is the last position
// whose chunk completed phase 3; finished only grows, in order, so every
// chunk at or below it has completed its write-back.
//
//	Begin(v)       snapshot := finished.
//	               The chunk runs; the committer is not involved.
//	Commit (ph.1)  under one short mutex: for each chunk k with
//	               snapshot < k <= ordered, if W(k) ∩ (R ∪ W) ≠ ∅ the chunk
//	               is squashed (Squash names the first such k and page).
//	               Otherwise: publish W, seq := ++ordered, return seq.
//	               (The whole check runs under the mutex: Txn.AddWrites
//	               may amend the write set of the chunk being finished.)
//	write-back     (phase 2) the caller copies its private pages to canonical
//	               memory, outside any lock, concurrently with other chunks'
//	               write-backs.
//	Finish (ph.3)  wait until finished == seq-1, run the caller's ordered
//	               hook (append the chunk record and its NDEs to the log,
//	               complete the exit that ended the chunk: device side
//	               effects happen in commit order), finished := seq.
//
// A hook may add pages to its chunk's write set (Txn.AddWrites): writes made
// while the exit is handled in order (device DMA, an interrupt raised in
// another vCPU's APIC, which the recorder models as a page). The caller must
// then keep other chunks from being ordered between the chunk's Commit and
// the end of its hook; samsara's recorder holds one lock across both.
//
// The ordered hook of chunk n runs after that of chunk n-1 has returned and
// before that of n+1 starts, exactly once, and never concurrently with
// another hook. Hooks run without the committer's mutex held.
//
// # The snapshot rule
//
// A chunk's snapshot is the last chunk that FINISHED, not the last one
// ORDERED. A chunk that starts while chunk k is between phase 1 and phase 3
// may fault in a page that k is halfway through writing back; taking
// snapshot = finished < k puts k among the chunks it is checked against, so
// any page the two share squashes the newcomer. With snapshot = ordered that
// torn page would go unnoticed. The price is a few spurious squashes of
// chunks that started during another's write-back and touched its pages
// after the write-back completed.
//
// # Why the committed chunks are serializable
//
// Claim: executing the committed chunks one at a time in sequence order from
// the initial memory gives every chunk the same page contents it saw, and
// the same final memory. Induction on seq. Take chunk n with snapshot s.
//   - Every chunk k <= s finished its write-back before n began.
//   - No chunk k with s < k < n wrote a page n read or wrote (phase 1).
//   - No chunk k > n writes back before n's phase 1, which is after n's last
//     access; so while n ran, canonical memory on n's pages held exactly the
//     result of chunks 1..s, which on those pages equals the serial state
//     after 1..n-1.
//   - Write-backs of one page happen in sequence order: of two chunks i < j
//     writing a page, either j began after i finished, or j checked W(i) and
//     would have been squashed. Concurrent write-backs touch disjoint pages.
//
// A write conflicts with an earlier chunk's write even if the chunk never
// read the page (write-write): write-back copies whole pages, so the private
// copy's stale bytes would overwrite the other chunk's update. Likewise two
// chunks touching different bytes of one page conflict (false sharing): the
// granularity is the 4 KiB page (PageShift).
//
// # Back-off and the exclusive fallback
//
// Each vCPU has a chunk budget in work units (guest progress, internal/pmc).
// It starts at Config.InitialBudget. The paper uses binary exponential
// back-off on squash; samsara does the same: every squash halves the budget,
// down to Config.MinBudget, because a shorter chunk touches fewer pages and
// overlaps fewer commits, so the probability of the next conflict drops. A
// squash of a chunk that already ran at the floor makes the vCPU's next chunk
// EXCLUSIVE: its Begin waits until no other chunk is running or committing
// (every other vCPU is at a chunk boundary or not running), and no other
// chunk may begin until it has finished. An exclusive chunk cannot conflict
// (nothing commits while it runs), which guarantees progress: starvation is
// bounded by log2(InitialBudget/MinBudget)+1 squashes. Each successful
// commit doubles the budget back up, capped at InitialBudget — the mirror of
// the back-off, so a vCPU that stopped conflicting regains full chunks after
// as many commits as it took squashes to shrink. The defaults
// (DefaultInitialBudget, DefaultMinBudget) are explained where they are
// declared.
//
// # Bounded memory
//
// The committer keeps the write set of chunk k only while some running
// chunk may still need to be checked against it, i.e. while k > the oldest
// snapshot of a running chunk (or k > finished when none runs). Memory is
// therefore bounded by the write sets of the chunks ordered during the
// longest running chunk.
//
// # Counters
//
// Stats returns, per vCPU: commits, squashes, exclusive runs, aborts,
// committed and re-executed (squashed) work units, the current budget, and a
// power-of-two histogram of committed chunk sizes; `samsara inspect` shows
// them. They are atomic counters, cheap on the per-chunk path.
package commit
