package pmc

import "fmt"

// Backend is how a host measures guest progress, and so where chunks can
// end and how replay lands on them (issue 11, item 1). samsara probe
// names it; each mechanism says which it needs.
type Backend int

const (
	// BackendNone: hardware virtualization (VMX/SVM) without a PMU
	// (cloud VMs, the emulated SVM host). No counter: chunks end at
	// exits, at the guest kernel's yields (kernel patch 0005) and, with
	// --state-match, at state-matching stops.
	BackendNone Backend = iota
	// BackendPVM: PVM. KVM's insn_emulation statistic counts guest
	// kernel instructions exactly (StopAt lands there); guest user code
	// is not counted and cannot be stopped exactly (doc.go).
	BackendPVM
	// BackendPMU: hardware virtualization with a PMU (most users' hosts):
	// the guest's retired conditional branches in both modes, counted
	// with exclude_host; replay lands with Land. Chosen by probe but not
	// yet used by the recorders (no PMU on this project's machines to
	// measure it on), which run as BackendNone there.
	BackendPMU
)

func (b Backend) String() string {
	switch b {
	case BackendPVM:
		return "pvm-insn-emulation"
	case BackendPMU:
		return "pmu-branches"
	}
	return "none"
}

// PMUEvent is the guest branch counter of one CPU family: the raw perf
// event and the skid margin Land needs.
type PMUEvent struct {
	Config uint64 // perf_event_attr.config, PERF_TYPE_RAW
	Margin uint64 // SkidMarginIntel or SkidMarginAMD
	Name   string
}

// PMUEventFor picks the guest branch event from /proc/cpuinfo's vendor_id,
// "cpu family" and "model": Intel family 6 (BR_INST_RETIRED.CONDITIONAL,
// umask 0x11 from Ice Lake's models on), AMD Zen (families 0x17 and
// 0x19, 0x1a: event 0xd1). Other CPUs: ok is false (rr supports no
// others either, for the same reason: no exact conditional-branch count).
func PMUEventFor(vendor string, family, model int) (e PMUEvent, ok bool) {
	switch {
	case vendor == "GenuineIntel" && family == 6:
		if iceLakeOrLater(model) {
			return PMUEvent{GuestBranchEventIntelICL, SkidMarginIntel, "BR_INST_RETIRED.CONDITIONAL (umask 0x11)"}, true
		}
		return PMUEvent{GuestBranchEventIntel, SkidMarginIntel, "BR_INST_RETIRED.CONDITIONAL"}, true
	case vendor == "AuthenticAMD" && (family == 0x17 || family == 0x19 || family == 0x1a):
		return PMUEvent{GuestBranchEventAMD, SkidMarginAMD, "retired conditional branches (0xd1)"}, true
	}
	return PMUEvent{}, false
}

// iceLakeOrLater: Intel family-6 models that count conditional branches
// with umask 0x11 (rr's table: Ice Lake 0x7d/0x7e/0x6a/0x6c, Tiger Lake
// 0x8c/0x8d, Rocket Lake 0xa7, Alder Lake 0x97/0x9a, Raptor Lake
// 0xb7/0xba/0xbf, Sapphire Rapids 0x8f, Meteor Lake 0xaa/0xac, Emerald
// Rapids 0xcf).
func iceLakeOrLater(model int) bool {
	switch model {
	case 0x7d, 0x7e, 0x6a, 0x6c, 0x8c, 0x8d, 0xa7, 0x97, 0x9a, 0xb7, 0xba, 0xbf, 0x8f, 0xaa, 0xac, 0xcf:
		return true
	}
	return false
}

// ChooseBackend is the backend of a host: PVM where its insn_emulation
// statistic counts, else the PMU where the guest branch event opened
// (pmuErr nil), else none.
func ChooseBackend(pvmCount bool, pmuErr error) Backend {
	switch {
	case pvmCount:
		return BackendPVM
	case pmuErr == nil:
		return BackendPMU
	}
	return BackendNone
}

// Describe says what a backend means for recording, for samsara probe.
func (b Backend) Describe(e PMUEvent) string {
	switch b {
	case BackendPVM:
		return "PVM insn_emulation: guest kernel instructions counted exactly (chunks preempted there); guest user code is not counted and never preempted"
	case BackendPMU:
		return fmt.Sprintf("PMU: guest %s, raw %#x with exclude_host, skid margin %d branches; landing (pmc.Land) is not yet used by the recorders, which run as on a host without a counter", e.Name, e.Config, e.Margin)
	}
	return "none: chunks end at exits, at the guest kernel's yields and, with --state-match, at state-matching stops"
}
