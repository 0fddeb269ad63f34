package session

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The profile's table and JSON say the same: every phase and "other" per
// vCPU, other being what the phases leave of the wall time (never below
// zero when timing noise makes them overlap it).
func TestProfileFormats(t *testing.T) {
	var a, b VCPUProfile
	a[PhaseGuest], a[PhaseWait] = 600*time.Millisecond, 300*time.Millisecond
	b[PhaseGuest], b[PhaseSquashed] = 800*time.Millisecond, 300*time.Millisecond
	p := Profile{Wall: time.Second, VCPUs: []VCPUProfile{a, b}}
	if o := a.Other(p.Wall); o != 100*time.Millisecond {
		t.Errorf("other of vcpu 0 = %v, want 100ms", o)
	}
	if o := b.Other(p.Wall); o != 0 {
		t.Errorf("other of vcpu 1 = %v, want 0 (its phases overlap the wall time)", o)
	}
	table := p.String()
	for _, want := range []string{"1.00s", "vcpu 0", "vcpu 1", "60.0%", "30.0%", "10.0%", "squashed", "checkpoint"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Wall  float64              `json:"wall_seconds"`
		VCPUs []map[string]float64 `json:"vcpus"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Wall != 1 || len(got.VCPUs) != 2 || got.VCPUs[0]["guest"] != 0.6 || got.VCPUs[1]["squashed"] != 0.3 || got.VCPUs[0]["other"] != 0.1 || len(got.VCPUs[0]) != int(numPhases)+1 {
		t.Errorf("JSON %s", raw)
	}
}
