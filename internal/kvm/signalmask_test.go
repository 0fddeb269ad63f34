package kvm

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSignalMaskArg checks KVM_SET_SIGNAL_MASK's argument byte for byte:
// struct kvm_signal_mask's sigset follows its 4-byte len with no padding,
// so SIGURG (the kick) and SIGUSR2 (the fast-forward timer) land on the
// bits the kernel reads as theirs.
func TestSignalMaskArg(t *testing.T) {
	mask := uint64(1)<<(uint(unix.SIGURG)-1) | uint64(1)<<(uint(unix.SIGUSR2)-1) | 1<<40
	m := signalMaskArg(mask)
	if n := binary.LittleEndian.Uint32(m[0:4]); n != 8 {
		t.Fatalf("len = %d, want 8 (the x86-64 kernel sigset)", n)
	}
	if got := binary.LittleEndian.Uint64(m[4:12]); got != mask {
		t.Fatalf("sigset at byte 4 = %#x, want %#x", got, mask)
	}
	if m := signalMaskArg(0); m != [12]byte{8} {
		t.Fatalf("an empty mask encodes as % x, want len 8 and zeros", m)
	}
}
