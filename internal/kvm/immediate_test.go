package kvm

import (
	"testing"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// SetImmediateExit writes kvm_run.immediate_exit through the word that
// holds it: the byte must be where gokvm's RunData has it, and the
// neighbouring request_interrupt_window byte must survive.
func TestImmediateExitOffset(t *testing.T) {
	var r gokvm.RunData
	if off := unsafe.Offsetof(r.ImmediateExit); off != immediateExitOffset {
		t.Fatalf("RunData.ImmediateExit at offset %d, want %d (kvm_run.immediate_exit)", off, immediateExitOffset)
	}
	r.RequestInterruptWindow = 1
	SetImmediateExit(&r, true)
	if r.ImmediateExit != 1 || r.RequestInterruptWindow != 1 {
		t.Fatalf("after set: immediate_exit %d, request_interrupt_window %d; want 1, 1", r.ImmediateExit, r.RequestInterruptWindow)
	}
	SetImmediateExit(&r, false)
	if r.ImmediateExit != 0 || r.RequestInterruptWindow != 1 {
		t.Fatalf("after clear: immediate_exit %d, request_interrupt_window %d; want 0, 1", r.ImmediateExit, r.RequestInterruptWindow)
	}
}
