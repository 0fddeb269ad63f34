package snapshot

// A VCPU in format version 3's JSON is one string: the base64 of a
// binary record, because the x86 state is mostly arrays of small numbers
// (FPU and XMM registers, segment fields), which encoding/json decodes
// one reflected element at a time: a 2-vCPU machine's metadata took 3.5 ms
// to decode as plain JSON against 0.5 ms for the old gob (natively; 10-100x
// that under QEMU TCG, where the emulated SVM host resumes checkpoints).
//
// The record, little-endian:
//
//	fixed   vcpuFixed in field order (encoding/binary: Regs, Sregs, FPU,
//	        Events, State), vcpuFixedSize bytes
//	nMSRs   uint32, then nMSRs x {index uint32, value uint64}, ascending
//	nXsave  uint32 (0 or XsaveSize), then the XSAVE area
//
// The field order of Regs, Sregs, Segment, Descriptor, FPU, Events and
// the structs in it is therefore part of the format (doc.go's bump rule;
// TestVCPURecordLayout pins it).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
)

// vcpuFixed is the fixed-size part of a VCPU record.
type vcpuFixed struct {
	Regs   Regs
	Sregs  Sregs
	FPU    FPU
	Events Events
	State  uint32
}

// vcpuFixedSize is the encoded size of vcpuFixed.
var vcpuFixedSize = binary.Size(vcpuFixed{})

// maxMSRs bounds the MSRs of a vCPU record (KVM reports a few hundred at
// most).
const maxMSRs = 4096

// MarshalJSON encodes v as a base64 string of its binary record.
func (v VCPU) MarshalJSON() ([]byte, error) {
	rec, err := v.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// MarshalBinary is v's binary record: the fixed part, the MSRs in index
// order, the XSAVE area (the recording's state stops carry it too).
func (v VCPU) MarshalBinary() ([]byte, error) {
	if len(v.Xsave) != 0 && len(v.Xsave) != XsaveSize {
		return nil, fmt.Errorf("XSAVE area of %d bytes, not %d", len(v.Xsave), XsaveSize)
	}
	if len(v.MSRs) > maxMSRs {
		return nil, fmt.Errorf("%d MSRs (at most %d)", len(v.MSRs), maxMSRs)
	}
	var b bytes.Buffer
	b.Grow(vcpuFixedSize + 8 + 12*len(v.MSRs) + len(v.Xsave))
	fixed := vcpuFixed{Regs: v.Regs, Sregs: v.Sregs, FPU: v.FPU, Events: v.Events, State: uint32(v.State)}
	if err := binary.Write(&b, binary.LittleEndian, &fixed); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, uint32(len(v.MSRs))))
	idx := make([]uint32, 0, len(v.MSRs))
	for i := range v.MSRs {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		b.Write(le.AppendUint64(le.AppendUint32(nil, i), v.MSRs[i]))
	}
	b.Write(le.AppendUint32(nil, uint32(len(v.Xsave))))
	b.Write(v.Xsave)
	return b.Bytes(), nil
}

// UnmarshalJSON decodes a VCPU record; every count is checked against
// what is left of the record before anything is allocated for it.
func (v *VCPU) UnmarshalJSON(data []byte) error {
	var rec []byte
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("vCPU record: %w", err)
	}
	return v.UnmarshalBinary(rec)
}

// UnmarshalBinary decodes MarshalBinary's record; every count is checked
// against what is left of the record before anything is allocated for
// it. v keeps a slice of rec (its XSAVE area).
func (v *VCPU) UnmarshalBinary(rec []byte) error {
	if len(rec) < vcpuFixedSize+8 {
		return fmt.Errorf("vCPU record of %d bytes, shorter than its fixed part", len(rec))
	}
	var fixed vcpuFixed
	if _, err := binary.Decode(rec, binary.LittleEndian, &fixed); err != nil {
		return fmt.Errorf("vCPU record: %w", err)
	}
	*v = VCPU{Regs: fixed.Regs, Sregs: fixed.Sregs, FPU: fixed.FPU, Events: fixed.Events, State: RunState(fixed.State)}
	if fixed.State > uint32(Dead) {
		return fmt.Errorf("vCPU record: run state %d", fixed.State)
	}
	le := binary.LittleEndian
	rest := rec[vcpuFixedSize:]
	n := le.Uint32(rest)
	rest = rest[4:]
	if n > maxMSRs || uint64(n)*12+4 > uint64(len(rest)) {
		return fmt.Errorf("vCPU record: %d MSRs in %d bytes", n, len(rest))
	}
	if n > 0 {
		v.MSRs = make(map[uint32]uint64, n)
	}
	for range n {
		i := le.Uint32(rest)
		if _, dup := v.MSRs[i]; dup {
			return fmt.Errorf("vCPU record: MSR %#x twice", i)
		}
		v.MSRs[i] = le.Uint64(rest[4:])
		rest = rest[12:]
	}
	nx := le.Uint32(rest)
	rest = rest[4:]
	if (nx != 0 && nx != XsaveSize) || uint64(nx) != uint64(len(rest)) {
		return fmt.Errorf("vCPU record: XSAVE area of %d bytes with %d left", nx, len(rest))
	}
	if nx > 0 {
		v.Xsave = rest
	}
	return nil
}
