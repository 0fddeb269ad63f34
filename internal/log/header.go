package log

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/samsara-vmm/samsara/internal/treehash"
	"io"
	"os"
	"time"
)

// The header is JSON rather than records: it is written once, read by
// people through `inspect --json`, and JSON lets a reader skip fields added
// later without a Version bump (encoding/json ignores unknown fields).

// Platform is how guest progress is counted on the recording host; replay
// needs the same kind of host because the counts are not comparable across.
type Platform string

// Platforms.
const (
	PlatformPVM Platform = "pvm" // PVM (pvm.ko): guest runs as a host process
	PlatformVMX Platform = "vmx" // Intel VT-x
	PlatformSVM Platform = "svm" // AMD-V
)

// Mode is the recorder that produced the log; both write the same records
// and one replayer serves both (DESIGN.md, "One log, one replayer").
type Mode string

// Recorder modes.
const (
	ModeSerialized Mode = "serialized" // one vCPU at a time, no conflicts
	ModeParallel   Mode = "parallel"   // all vCPUs at once, ordered commit
)

// MaxVCPUs bounds Config.CPUs so that a corrupt header cannot make a reader
// allocate per-vCPU state for billions of vCPUs. KVM's own limit is in the
// same range.
const MaxVCPUs = 1024

// Header describes the recorded machine and how the recording was made.
// Replay builds the same machine from it and refuses inputs whose hashes
// differ.
type Header struct {
	// Config is the virtual machine that was recorded.
	Config VMConfig `json:"config"`
	// Hashes identifies the inputs that replay must be given again.
	Hashes Hashes `json:"hashes"`
	// Platform is the host virtualization the counts were taken on.
	Platform Platform `json:"platform"`
	// Counter is the internal/pmc backend name (progress semantics).
	Counter string `json:"counter"`
	// Mode is the recorder (serialized or parallel).
	Mode Mode `json:"mode"`
	// Tracker is the internal/ept page tracker name ("" in serialized mode).
	Tracker string `json:"tracker"`
	// Recorder are the recorder options that shaped the chunks (since
	// Version 5; nil in a header written without them).
	Recorder *RecorderOptions `json:"recorder_options,omitempty"`
	// SamsaraVersion is the version string of the recording binary.
	SamsaraVersion string `json:"samsara_version"`
	// Created is when recording started (informational only: nothing in
	// replay may depend on it).
	Created time.Time `json:"created"`
}

// RecorderOptions are the recorder switches that change where chunks end
// (internal/session's Options; record's flags of the same names). Replay
// needs none of them, since the chunks are in the log; they say how the
// recording was made, so that it can be made again the same way.
type RecorderOptions struct {
	// KernelCount: chunks could end by preemption in guest kernel code
	// (PVM's exact kernel instruction count); without it they end only at
	// exits, the guest kernel's busy-waits among them (yields).
	KernelCount bool `json:"kernel_count"`
	// PrivilegeEnds: parallel chunks end at privilege changes.
	PrivilegeEnds bool `json:"privilege_ends"`
	// EarlyConflicts: parallel chunks doomed by a commit stop at once.
	EarlyConflicts bool `json:"early_conflicts"`
	// SpinChecks: serialized chunks in a kernel spin function are
	// preempted early.
	SpinChecks bool `json:"spin_checks"`
	// StateMatch: serialized chunks spinning without exits were ended at
	// state-matching stops (reason state-match; no counter).
	StateMatch bool `json:"state_match,omitempty"`
	// StateStops: serialized chunks that made no exit for long were ended
	// where a kick found them, their state logged (reason state-stop).
	StateStops bool `json:"state_stops,omitempty"`
	// DebugSquashAll: every parallel chunk was squashed once.
	DebugSquashAll bool `json:"debug_squash_all"`
}

// VMConfig is the recorded machine's configuration.
type VMConfig struct {
	CPUs        int      `json:"cpus"`         // number of vCPUs, 1..MaxVCPUs
	MemoryBytes uint64   `json:"memory_bytes"` // guest RAM size
	Cmdline     string   `json:"cmdline"`      // kernel command line as passed
	Argv        []string `json:"argv"`         // guest program and arguments, if any
}

// Hashes are lowercase hex tree digests (internal/treehash: XXH64 per MiB,
// SHA-256 over those; since Version 4, SHA-256 before; see HashBytes,
// HashFile); an
// empty string means "none" (no initrd, no disk, cold boot).
type Hashes struct {
	Kernel     string `json:"kernel"`
	Initrd     string `json:"initrd"`
	Disk       string `json:"disk"`
	Cmdline    string `json:"cmdline"`
	Checkpoint string `json:"checkpoint"` // snapshot the recording starts from
}

// HashBytes returns the lowercase hex tree digest of b, as Hashes stores it.
func HashBytes(b []byte) string {
	s := treehash.Bytes(b)
	return hex.EncodeToString(s[:])
}

// HashReader returns the lowercase hex tree digest of everything r yields.
// (A disk image or kernel is hashed by every record and replay; under TCG,
// in the emulated SVM host, SHA-256 of a 17 MB vmlinux took about 1 s.)
func HashReader(r io.Reader) (string, error) {
	h := treehash.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	s := h.Sum()
	return hex.EncodeToString(s[:]), nil
}

// HashFile returns the lowercase hex tree digest of the file at path.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	s, err := HashReader(f)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return s, nil
}

// Validate checks the fields the reader and writer rely on: the vCPU count
// (records are checked against it), the hash syntax, and the enumerations.
func (h *Header) Validate() error {
	if h.Config.CPUs < 1 || h.Config.CPUs > MaxVCPUs {
		return fmt.Errorf("header: cpus %d not in 1..%d", h.Config.CPUs, MaxVCPUs)
	}
	for _, f := range []struct{ name, v string }{
		{"kernel", h.Hashes.Kernel},
		{"initrd", h.Hashes.Initrd},
		{"disk", h.Hashes.Disk},
		{"cmdline", h.Hashes.Cmdline},
		{"checkpoint", h.Hashes.Checkpoint},
	} {
		if f.v != "" && !isHexSHA256(f.v) {
			return fmt.Errorf("header: %s hash %q is not a lowercase hex SHA-256", f.name, f.v)
		}
	}
	switch h.Platform {
	case PlatformPVM, PlatformVMX, PlatformSVM:
	default:
		return fmt.Errorf("header: unknown platform %q", h.Platform)
	}
	switch h.Mode {
	case ModeSerialized, ModeParallel:
	default:
		return fmt.Errorf("header: unknown recorder mode %q", h.Mode)
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// marshalHeader encodes h for the header block.
func marshalHeader(h *Header) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	if len(b) > MaxHeaderSize {
		return nil, fmt.Errorf("encode header: %d bytes exceeds the %d byte limit", len(b), MaxHeaderSize)
	}
	return b, nil
}

// unmarshalHeader decodes and validates a header block payload. Exactly one
// JSON value must be present: trailing bytes mean corruption.
func unmarshalHeader(b []byte) (*Header, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	h := new(Header)
	if err := dec.Decode(h); err != nil {
		return nil, fmt.Errorf("decode header: %w", err)
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return nil, fmt.Errorf("decode header: trailing data after the header")
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}
