package log

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the first byte of every encoded record. The numbers are part of the
// file format: never renumber or reuse one; add new kinds at the end and bump
// Version.
type Kind uint8

// Record kinds. Zero is deliberately not a kind, so that a zeroed byte in a
// payload cannot decode as a valid record.
const (
	KindChunk          Kind = 1 // *Chunk: a committed chunk
	KindPIORead        Kind = 2 // *PIORead: value of a port read from a host device
	KindMMIORead       Kind = 3 // *MMIORead: value of an MMIO read from a host device
	KindInterrupt      Kind = 4 // *Interrupt: an injected interrupt and where
	KindDiskCompletion Kind = 5 // *DiskCompletion: when an async disk request completed
	KindConsoleInput   Kind = 6 // *ConsoleInput: bytes typed on the serial console
	KindTime           Kind = 7 // *Time: a clock value handed to the guest
	KindDigest         Kind = 8 // *Digest: a state digest to compare during replay
	KindEnd            Kind = 9 // *End: how the recorded run ended
	// KindRecorderStats: *RecorderStats, the parallel recorder's counters
	// (since Version 2).
	KindRecorderStats Kind = 10
	// KindStateStop: *StateStop, the state a chunk ended in at a state
	// stop (reason state-stop; since Version 7).
	KindStateStop Kind = 11

	// numKinds bounds arrays indexed by Kind; it is one past the last kind.
	numKinds = 12
)

var kindNames = [numKinds]string{
	KindChunk:          "chunk",
	KindPIORead:        "pio-read",
	KindMMIORead:       "mmio-read",
	KindInterrupt:      "interrupt",
	KindDiskCompletion: "disk-completion",
	KindConsoleInput:   "console-input",
	KindTime:           "time",
	KindDigest:         "digest",
	KindEnd:            "end",
	KindRecorderStats:  "recorder-stats",
	KindStateStop:      "state-stop",
}

// Kinds returns every record kind this version knows, in numeric order.
func Kinds() []Kind {
	ks := make([]Kind, 0, numKinds-1)
	for k := Kind(1); k < numKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// Valid reports whether k is a kind this version of the format defines.
func (k Kind) Valid() bool { return k > 0 && k < numKinds }

// String returns the kind's name as `inspect` prints it, or "kind(N)" for a
// number this version does not define.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText makes Kind usable as a JSON object key (inspect --json).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a name produced by MarshalText.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := parseName(string(b), "kind", kindNames[:])
	if err != nil {
		return err
	}
	*k = Kind(v)
	return nil
}

// Reason says why a chunk ended. Like Kind, the numbers are part of the file
// format; the reader rejects numbers it does not know, so adding a reason
// needs a Version bump.
type Reason uint8

// Chunk end reasons. Zero is not a reason, so a Chunk whose Reason was never
// set is refused by the Writer instead of being recorded as something.
const (
	// ReasonIO: the vCPU exited for a port I/O access to a userspace device.
	ReasonIO Reason = 1
	// ReasonMMIO: the vCPU exited for an MMIO access to a userspace device.
	ReasonMMIO Reason = 2
	// ReasonHalt: the vCPU executed HLT with no interrupt pending.
	ReasonHalt Reason = 3
	// ReasonBudget: the chunk reached its size limit (the progress budget).
	ReasonBudget Reason = 4
	// ReasonIRQWindow: the chunk was ended so an interrupt could be injected
	// (the guest opened its interrupt window).
	ReasonIRQWindow Reason = 5
	// ReasonExit: another VM exit to userspace ended the chunk (MSR, CPUID,
	// shutdown, ...).
	ReasonExit Reason = 6
	// ReasonOther: the recorder ended the chunk for a reason outside the guest
	// (a kick to stop recording, a signal).
	ReasonOther Reason = 7
	// ReasonConflict: the chunk was truncated early because a conflict with
	// another vCPU's committed chunk was detected or predicted (parallel mode).
	ReasonConflict Reason = 8
	// ReasonPrivilege: the chunk ended where the guest changes privilege,
	// at a point in guest kernel code found like a budget preemption (the
	// return to user mode, or a kernel entry; parallel mode).
	ReasonPrivilege Reason = 9
	// ReasonYield: the guest kernel announced a busy-wait with an exit to
	// the yield port (reference kernel patch 0005, samsara_yield=): the
	// serialized recorder handed the turn to another vCPU there; the
	// parallel recorder ends such a chunk like any exit (since Version 5).
	ReasonYield Reason = 10
	// ReasonStateMatch: on hardware virtualization without an instruction
	// counter, the serialized recorder stopped a vCPU that made no exit
	// (a kick) at an instruction it saw the vCPU pass twice in the same
	// state (a spin). End.Regs is then the hash of the full state (general
	// registers, RIP, flags, segments, control registers, x87/SSE), and
	// replay, after the chunk's Exits, stops at the first hardware
	// breakpoint hit at End.RIP whose state hashes the same: two instants
	// with the same state have the same future (since Version 6).
	ReasonStateMatch Reason = 11
	// ReasonStateStop: without a counter for the code the vCPU ran (guest
	// user mode on PVM; all guest code on hardware virtualization without
	// a PMU), the serialized recorder stopped a vCPU that had made no
	// exit for long (a kick) wherever it stood, and logged the state it
	// stood in: a StateStop record before the chunk holds the vCPU's
	// architectural state and every guest page written during the chunk.
	// Replay runs the chunk through its Exits and then puts that state in
	// place instead of re-running the instructions after the last exit,
	// which no exit or count lets it find (since Version 7).
	ReasonStateStop Reason = 12

	numReasons = 13
)

var reasonNames = [numReasons]string{
	ReasonIO:         "io",
	ReasonMMIO:       "mmio",
	ReasonHalt:       "halt",
	ReasonBudget:     "budget",
	ReasonIRQWindow:  "irq-window",
	ReasonExit:       "exit",
	ReasonOther:      "other",
	ReasonConflict:   "conflict",
	ReasonPrivilege:  "privilege",
	ReasonYield:      "yield",
	ReasonStateMatch: "state-match",
	ReasonStateStop:  "state-stop",
}

// Valid reports whether r is a reason this version of the format defines.
func (r Reason) Valid() bool { return r > 0 && r < numReasons }

// String returns the reason's name, or "reason(N)" for an undefined number.
func (r Reason) String() string {
	if r.Valid() {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText makes Reason usable as a JSON object key.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses a name produced by MarshalText.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := parseName(string(b), "reason", reasonNames[:])
	if err != nil {
		return err
	}
	*r = Reason(v)
	return nil
}

// parseName maps a name back to its index in names, also accepting the
// "what(N)" form String produces for unknown numbers.
func parseName(s, what string, names []string) (int, error) {
	for i, n := range names {
		if n != "" && n == s {
			return i, nil
		}
	}
	if rest, ok := strings.CutPrefix(s, what+"("); ok {
		if num, ok := strings.CutSuffix(rest, ")"); ok {
			if v, err := strconv.ParseUint(num, 10, 8); err == nil {
				return int(v), nil
			}
		}
	}
	return 0, fmt.Errorf("unknown %s %q", what, s)
}
