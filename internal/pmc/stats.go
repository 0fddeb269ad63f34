package pmc

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Stats reads a KVM binary statistics fd (Documentation/virt/kvm/api.rst,
// "KVM_GET_STATS_FD"): a header, descriptors, then the data block. Only
// 64-bit cumulative/instant counters are exposed, by name.
type Stats struct {
	fd int
	// offsets maps a statistic's name to its byte offset in the file.
	offsets map[string]int64
}

// kvm_stats_header.
type statsHeader struct {
	Flags      uint32
	NameSize   uint32
	NumDesc    uint32
	IDOffset   uint32
	DescOffset uint32
	DataOffset uint32
}

// maxStatsDescs bounds what we parse from the kernel (6.x has ~70 vCPU
// statistics).
const maxStatsDescs = 4096

// OpenStats parses the descriptors of a statistics fd (it takes ownership).
func OpenStats(fd int) (*Stats, error) {
	var raw [24]byte
	if _, err := unix.Pread(fd, raw[:], 0); err != nil {
		return nil, fmt.Errorf("read kvm stats header: %w", err)
	}
	var h statsHeader
	binary.Read(bytes.NewReader(raw[:]), binary.LittleEndian, &h)
	if h.NumDesc > maxStatsDescs || h.NameSize > 4096 {
		return nil, fmt.Errorf("kvm stats header is implausible: %d descriptors, names of %d bytes", h.NumDesc, h.NameSize)
	}
	descSize := 16 + int(h.NameSize)
	buf := make([]byte, descSize*int(h.NumDesc))
	if _, err := unix.Pread(fd, buf, int64(h.DescOffset)); err != nil {
		return nil, fmt.Errorf("read kvm stats descriptors: %w", err)
	}
	s := &Stats{fd: fd, offsets: map[string]int64{}}
	for i := 0; i < int(h.NumDesc); i++ {
		d := buf[i*descSize:]
		size := binary.LittleEndian.Uint16(d[6:])
		off := binary.LittleEndian.Uint32(d[8:])
		name := d[16 : 16+h.NameSize]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		if size == 1 {
			s.offsets[string(name)] = int64(h.DataOffset) + int64(off)
		}
	}
	return s, nil
}

// Has reports whether the statistic exists.
func (s *Stats) Has(name string) bool { _, ok := s.offsets[name]; return ok }

// Read returns the current value of a statistic.
func (s *Stats) Read(name string) (uint64, error) {
	off, ok := s.offsets[name]
	if !ok {
		return 0, fmt.Errorf("kvm statistic %q not available", name)
	}
	var b [8]byte
	if _, err := unix.Pread(s.fd, b[:], off); err != nil {
		return 0, fmt.Errorf("read kvm statistic %s: %w", name, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Close closes the statistics fd.
func (s *Stats) Close() error { return unix.Close(s.fd) }
