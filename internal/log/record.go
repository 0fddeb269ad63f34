package log

import "github.com/klauspost/compress/zstd"

// Record is one entry of a recording. The concrete types are the pointer
// types below (*Chunk, *PIORead, ...); Reader.Next returns them and
// Writer.Append accepts them, so consumers use a type switch:
//
//	switch r := rec.(type) {
//	case *log.Chunk: ...
//	case *log.PIORead: ...
//	}
type Record interface {
	Kind() Kind
}

// Point is a position in one vCPU's execution: how far it has progressed,
// plus registers that tell apart the instructions that share one progress
// value (a loop without conditional branches retires many instructions at
// the same branch count; RIP and RCX, the usual loop counter, separate them).
// What the counts mean is defined by internal/pmc for the header's Counter.
type Point struct {
	// UserBranches is the guest's retired conditional branches at CPL3 (or
	// at all CPLs on backends that count both together).
	UserBranches uint64 `json:"user_branches"`
	// KernelInsns is the guest kernel instructions counted separately (the
	// PVM insn_emulation statistic); zero on backends that do not need it.
	KernelInsns uint64 `json:"kernel_insns"`
	// RIP is the guest instruction pointer at the point.
	RIP uint64 `json:"rip"`
	// RCX disambiguates REP-prefixed string instructions and counted loops.
	RCX uint64 `json:"rcx"`
	// Regs is a hash of all general-purpose registers at the point (0 if
	// not recorded): replay checks it, and uses it to find the point again
	// when the progress count is off by a few (see vmm/det.go).
	Regs uint64 `json:"regs"`
}

// Chunk is a committed chunk: vCPU VCPU ran from the end of its previous
// chunk to End. Chunks appear in commit order, which is the replay order.
type Chunk struct {
	// VCPU is the vCPU index, below Header.Config.CPUs.
	VCPU uint32 `json:"vcpu"`
	// End is where the chunk stopped; replay stops the vCPU exactly there.
	End Point `json:"end"`
	// Reason is why the chunk ended; replay expects the same exit there.
	Reason Reason `json:"reason"`
	// Squashes counts how often this chunk was squashed and re-run before it
	// committed (always 0 in serialized mode); for inspect and tuning only.
	Squashes uint32 `json:"squashes"`
	// Exits is the number of guest exits to the VMM (port I/O, MMIO, HLT,
	// interrupt windows) the chunk handled. Exits happen at deterministic
	// points, so replay reproduces a chunk that ended at an exit by
	// running the vCPU through the same number of exits.
	Exits uint32 `json:"exits"`
	// GuestMicros is the guest time, in microseconds, that the chunk's
	// end added to the machine's clock: the host time the recorder
	// measured for the chunk (internal/session, "Guest time"), so that
	// replay advances the clock by the same amount at the same point.
	GuestMicros uint32 `json:"guest_micros"`
}

// PIORead is the value a userspace device returned for a guest port read
// whose result came from the host (it is fed back in replay instead of
// asking the device).
type PIORead struct {
	VCPU  uint32 `json:"vcpu"`  // the reading vCPU
	Port  uint16 `json:"port"`  // the I/O port
	Size  uint8  `json:"size"`  // access size in bytes
	Value uint64 `json:"value"` // the value returned, zero-extended
}

// MMIORead is PIORead for a memory-mapped device register.
type MMIORead struct {
	VCPU  uint32 `json:"vcpu"`  // the reading vCPU
	Addr  uint64 `json:"addr"`  // the guest-physical address
	Size  uint8  `json:"size"`  // access size in bytes
	Value uint64 `json:"value"` // the value returned, zero-extended
}

// Interrupt is an interrupt injected into VCPU at At (a chunk boundary).
type Interrupt struct {
	VCPU   uint32 `json:"vcpu"`   // the target vCPU
	Vector uint8  `json:"vector"` // the IDT vector injected
	At     Point  `json:"at"`     // where in VCPU's execution it was injected
}

// DiskCompletion records when the asynchronous disk request Seq completed
// as seen by VCPU. Its exact use is defined by the virtio-blk device; the
// kind exists now so the format need not change when async I/O lands.
type DiskCompletion struct {
	Seq  uint64 `json:"seq"`  // request sequence number, in submission order
	VCPU uint32 `json:"vcpu"` // the vCPU that observed the completion
	At   Point  `json:"at"`   // where it observed it
}

// ConsoleInput is input that reached the guest's serial console.
type ConsoleInput struct {
	// Data is the bytes, in order. A record read by Reader owns its Data.
	Data []byte `json:"data"`
}

// Time is a clock value handed to the guest through a device read.
type Time struct {
	VCPU  uint32 `json:"vcpu"`  // the reading vCPU
	Nanos int64  `json:"nanos"` // nanoseconds on the guest clock
}

// Digest is a hash of machine state at a point of the recording; replay
// recomputes it at the same point and reports a divergence on mismatch.
type Digest struct {
	// Seq numbers digests from 0 so a divergence report can name one.
	Seq uint64 `json:"seq"`
	// VCPUs holds one hash of the architectural registers per vCPU, indexed
	// by vCPU (SHA-256 so that replay can compare without the raw state).
	VCPUs [][32]byte `json:"vcpus"`
	// Memory is the tree digest of guest memory (since Version 4: the
	// SHA-256 of the XXH64 of each MiB, internal/treehash; SHA-256
	// over 256 MiB took 22 s of every record and replay under TCG).
	Memory [32]byte `json:"memory"`
}

// End is the last record of a complete recording: how the guest run ended.
// The Writer does not add it; the recorder appends it before Close because
// only the recorder knows the exit code.
type End struct {
	ExitCode int32  `json:"exit_code"` // guest's exit code (power-off value)
	Reason   string `json:"reason"`    // human-readable cause, e.g. "poweroff"
	// GuestNanos is the guest (virtual) time the recording covers, for
	// log rates per guest second.
	GuestNanos uint64 `json:"guest_nanos"`
}

// RecorderStats is the parallel recorder's counters for the whole run
// (internal/commit's Stats), kept so that `samsara inspect` can show how
// well the recording parallelized: how often chunks were squashed and
// re-executed, how often a vCPU fell back to running alone, and how large
// the committed chunks were. Nothing in replay depends on it.
//
// The parallel recorder appends exactly one, after the last Chunk and its
// NDEs and just before the final Digest and End; the serialized recorder
// writes none. Readers must not assume it is present (older recordings,
// recordings cut short) nor that it is the last record.
//
// Work units: a chunk's work is the guest kernel instructions it retired
// plus one (so that an empty chunk still counts as 1 unit); this is what
// commit.Chunk.Work returns for parallel-mode chunks.
//
// The recorder fills it straight from a commit.Stats snapshot st:
//
//	rs := &log.RecorderStats{
//		Tracker:    trackerName,
//		VCPUs:      make([]log.RecorderVCPUStats, len(st.VCPUs)),
//		ChunkSizes: log.SizeHistogram(st.ChunkSizes.Buckets),
//	}
//	for i, v := range st.VCPUs {
//		rs.VCPUs[i] = log.RecorderVCPUStats{
//			Commits: v.Commits, Squashes: v.Squashes, ExclusiveRuns: v.ExclusiveRuns,
//			CommittedWork: v.CommittedWork, ReexecutedWork: v.ReexecutedWork,
//		}
//	}
//	err := w.Append(rs)
type RecorderStats struct {
	// Tracker is the internal/ept page tracker name the recorder used
	// (normally the same as Header.Tracker).
	Tracker string `json:"tracker"`
	// VCPUs holds one entry per vCPU, indexed by vCPU; its length must be
	// Header.Config.CPUs (the Writer and Reader check it).
	VCPUs []RecorderVCPUStats `json:"vcpus"`
	// ChunkSizes counts all vCPUs' committed chunks by their work units
	// in power-of-two buckets, indexed exactly as commit.Histogram.Buckets
	// (see SizeHistogram).
	ChunkSizes SizeHistogram `json:"chunk_sizes"`
}

// RecorderVCPUStats are one vCPU's counters in RecorderStats; each field is
// the commit.VCPUStats field of the same name.
type RecorderVCPUStats struct {
	// Commits is the number of the vCPU's chunks that committed.
	Commits uint64 `json:"commits"`
	// Squashes is the number of its chunk executions squashed by a
	// conflict (each one was re-executed).
	Squashes uint64 `json:"squashes"`
	// ExclusiveRuns is the number of its chunks that ran exclusively
	// (every other vCPU stopped), the fallback after repeated squashes.
	ExclusiveRuns uint64 `json:"exclusive_runs"`
	// CommittedWork sums the work units of its committed chunks.
	CommittedWork uint64 `json:"committed_work"`
	// ReexecutedWork sums the work units of its squashed executions: the
	// progress that was thrown away and done again.
	ReexecutedWork uint64 `json:"reexecuted_work"`
}

// StateStop is the state a serialized chunk ended in at a state stop
// (ReasonStateStop); it comes just before that chunk's record.
type StateStop struct {
	// VCPU is the stopped vCPU, the next chunk's.
	VCPU uint32 `json:"vcpu"`
	// Arch is the vCPU's architectural state where it stopped (registers,
	// segments, control registers, XSAVE, MSRs, pending events), in the
	// checkpoint's binary vCPU encoding (internal/snapshot, VCPU).
	Arch []byte `json:"arch"`
	// CodePage is the guest page number of the code page the vCPU stopped
	// in (its RIP's, translated where it stopped), in the record with
	// Arch: replay on PVM runs the vCPU from the chunk's last exit until
	// it first fetches from that page at the stop's privilege level, since
	// PVM cannot change a vCPU's privilege level through KVM_SET_SREGS.
	CodePage uint64 `json:"code_page"`
	// ExitRegs, in the record with Arch, hashes the vCPU's registers
	// (session.regsHash) after the chunk's last exit was handled (at the
	// chunk's start if it made none), where replay stands before it puts
	// Arch in place; 0 where it is not recorded (PVM, whose replay runs on
	// to CodePage and meets any exit on the way). Without it a changed
	// exit count before a stop would go unseen on VMX/SVM.
	ExitRegs uint64 `json:"exit_regs,omitempty"`
	// Pages are the guest page numbers (guest-physical address / 4 KiB,
	// ascending) the guest wrote during the chunk, and Data their
	// contents where it stopped, 4 KiB each in the same order.
	Pages []uint64 `json:"pages"`
	Data  []byte   `json:"-"`
}

// PageSize is the size of each page of a StateStop.
const PageSize = 4096

// Kind implementations: each record type reports its kind byte.

func (*Chunk) Kind() Kind          { return KindChunk }
func (*PIORead) Kind() Kind        { return KindPIORead }
func (*MMIORead) Kind() Kind       { return KindMMIORead }
func (*Interrupt) Kind() Kind      { return KindInterrupt }
func (*DiskCompletion) Kind() Kind { return KindDiskCompletion }
func (*ConsoleInput) Kind() Kind   { return KindConsoleInput }
func (*Time) Kind() Kind           { return KindTime }
func (*Digest) Kind() Kind         { return KindDigest }
func (*End) Kind() Kind            { return KindEnd }
func (*RecorderStats) Kind() Kind  { return KindRecorderStats }
func (*StateStop) Kind() Kind      { return KindStateStop }

// newRecord returns a zero record of kind k, or nil for an unknown kind.
func newRecord(k Kind) codec {
	switch k {
	case KindChunk:
		return new(Chunk)
	case KindPIORead:
		return new(PIORead)
	case KindMMIORead:
		return new(MMIORead)
	case KindInterrupt:
		return new(Interrupt)
	case KindDiskCompletion:
		return new(DiskCompletion)
	case KindConsoleInput:
		return new(ConsoleInput)
	case KindTime:
		return new(Time)
	case KindDigest:
		return new(Digest)
	case KindEnd:
		return new(End)
	case KindRecorderStats:
		return new(RecorderStats)
	case KindStateStop:
		return new(StateStop)
	}
	return nil
}

// CompressedSize estimates what the bytes of a StateStop's state and
// pages take in the log: their size compressed with zstd's fastest level
// (the log's own blocks use a better level and the neighbouring records,
// so the log takes somewhat less). The recorder paces its state stops by
// it.
func (s *StateStop) CompressedSize() (int, error) {
	e, err := sharedEncoder(zstd.SpeedFastest)
	if err != nil {
		return 0, err
	}
	src := make([]byte, 0, len(s.Arch)+len(s.Data))
	src = append(append(src, s.Arch...), s.Data...)
	return len(e.EncodeAll(src, nil)), nil
}
