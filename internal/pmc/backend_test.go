package pmc

import (
	"errors"
	"testing"
)

// TestPMUEventFor: the event and margin follow the CPU, as rr's table does.
func TestPMUEventFor(t *testing.T) {
	for _, c := range []struct {
		vendor        string
		family, model int
		config        uint64
		margin        uint64
		ok            bool
	}{
		{"GenuineIntel", 6, 0x55, GuestBranchEventIntel, SkidMarginIntel, true},    // Skylake server
		{"GenuineIntel", 6, 0x6a, GuestBranchEventIntelICL, SkidMarginIntel, true}, // Ice Lake server
		{"GenuineIntel", 6, 0x97, GuestBranchEventIntelICL, SkidMarginIntel, true}, // Alder Lake
		{"AuthenticAMD", 0x17, 0x31, GuestBranchEventAMD, SkidMarginAMD, true},     // Zen 2
		{"AuthenticAMD", 0x19, 0x01, GuestBranchEventAMD, SkidMarginAMD, true},     // Zen 3
		{"AuthenticAMD", 0x15, 0x02, 0, 0, false},                                  // Family 15h: taken branches, not conditional
		{"HygonGenuine", 0x18, 0x00, 0, 0, false},
	} {
		e, ok := PMUEventFor(c.vendor, c.family, c.model)
		if ok != c.ok || e.Config != c.config || e.Margin != c.margin {
			t.Errorf("PMUEventFor(%s, %#x, %#x) = %+v, %v; want config %#x margin %d, %v", c.vendor, c.family, c.model, e, ok, c.config, c.margin, c.ok)
		}
	}
}

// TestChooseBackend: PVM's count wins; else a PMU that opened; else none.
func TestChooseBackend(t *testing.T) {
	noPMU := errors.New("no such file or directory")
	for _, c := range []struct {
		pvm  bool
		err  error
		want Backend
	}{
		{true, noPMU, BackendPVM},
		{true, nil, BackendPVM},
		{false, nil, BackendPMU},
		{false, noPMU, BackendNone},
	} {
		if got := ChooseBackend(c.pvm, c.err); got != c.want {
			t.Errorf("ChooseBackend(%v, %v) = %v, want %v", c.pvm, c.err, got, c.want)
		}
	}
}
