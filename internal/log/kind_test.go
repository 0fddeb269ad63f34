package log

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestKindNames(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Kinds() {
		name := k.String()
		if name == "" || seen[name] {
			t.Errorf("kind %d has empty or duplicate name %q", k, name)
		}
		seen[name] = true
		if r := newRecord(k); r == nil || r.Kind() != k {
			t.Errorf("newRecord(%v) = %#v", k, r)
		}
	}
	for _, tc := range []struct {
		k    Kind
		want string
	}{{KindChunk, "chunk"}, {KindDigest, "digest"}, {0, "kind(0)"}, {200, "kind(200)"}} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tc.k, got, tc.want)
		}
		var back Kind
		if err := back.UnmarshalText([]byte(tc.want)); err != nil || back != tc.k {
			t.Errorf("UnmarshalText(%q) = %v, %v", tc.want, back, err)
		}
	}
	var k Kind
	if err := k.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText accepted an unknown name")
	}
}

func TestReasonNames(t *testing.T) {
	for _, tc := range []struct {
		r    Reason
		want string
	}{
		{ReasonIO, "io"}, {ReasonMMIO, "mmio"}, {ReasonHalt, "halt"}, {ReasonBudget, "budget"},
		{ReasonIRQWindow, "irq-window"}, {ReasonExit, "exit"}, {ReasonOther, "other"},
		{ReasonConflict, "conflict"}, {ReasonPrivilege, "privilege"}, {0, "reason(0)"}, {99, "reason(99)"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("Reason(%d).String() = %q, want %q", tc.r, got, tc.want)
		}
		if tc.r.Valid() != (tc.r > 0 && tc.r < numReasons) {
			t.Errorf("Reason(%d).Valid() wrong", tc.r)
		}
	}
	// Maps keyed by Reason round-trip through JSON with names as keys.
	in := map[Reason]uint64{ReasonHalt: 3, ReasonIRQWindow: 1}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"halt":3,"irq-window":1}` {
		t.Errorf("JSON %s", b)
	}
	var out map[Reason]uint64
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(in, out) {
		t.Errorf("JSON round trip: %v, %v", out, err)
	}
}

func TestHeaderHelpers(t *testing.T) {
	if got := HashBytes(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("HashBytes(nil) = %s", got)
	}
	if err := testHeader().Validate(); err != nil {
		t.Errorf("testHeader invalid: %v", err)
	}
	h := testHeader()
	h.Hashes.Checkpoint = HashBytes([]byte("snap"))
	h.Mode, h.Platform, h.Tracker = ModeSerialized, PlatformVMX, ""
	if err := h.Validate(); err != nil {
		t.Errorf("serialized vmx header invalid: %v", err)
	}
}
