package vmm

import (
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
)

// Control-register and MSR bits for the long-mode entry state.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0NE   = 1 << 5
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
	// apicBaseEnable and apicBaseBSP are IA32_APIC_BASE bits 11 and 8.
	apicBaseEnable = 1 << 11
	apicBaseBSP    = 1 << 8
)

// bootKernel loads the kernel and initrd, writes the boot structures and
// the MP table, and puts the BSP at the kernel entry in long mode.
func (m *Machine) bootKernel() error {
	mem := m.mem.mem
	k, err := loadKernel(mem, m.cfg.Kernel)
	if err != nil {
		return err
	}
	m.marks, m.spins = k.marks, k.spins
	var initrd []byte
	if m.cfg.Initrd != "" {
		if initrd, err = readFileLimit("initrd", m.cfg.Initrd, maxInitrdBytes); err != nil {
			return err
		}
	}
	platform := m.cfg.Platform
	if platform == "" {
		platform = ProbePlatform()
	}
	m.cmdline = GuestCmdline(m.blk != nil, platform)
	if m.cfg.Append != "" {
		m.cmdline += " " + m.cfg.Append
	}
	if err := writeBootParams(mem, m.cmdline, initrd, k.end); err != nil {
		return err
	}
	writeIdentityMap(mem)
	writeGDT(mem)
	table := BuildMPTable(mpTableAddr, m.cfg.CPUs, uint8(m.cfg.CPUs), ioapicAddr, nil)
	if len(table) > lowMemEnd-mpTableAddr {
		return fmt.Errorf("MP table of %d bytes does not fit in its KiB", len(table))
	}
	copy(mem[mpTableAddr:], table)

	for _, v := range m.vcpus {
		// Every LAPIC is enabled with its base at the default address; only
		// the BSP has the BSP flag (Intel SDM vol. 3, 10.4.4).
		s, err := kvm.GetSregs(uintptr(v.fd))
		if err != nil {
			return fmt.Errorf("vcpu %d sregs: %w", v.id, err)
		}
		s.ApicBase = lapicAddr | apicBaseEnable
		if v.id == 0 {
			s.ApicBase |= apicBaseBSP
			setLongMode(s)
		}
		if err := kvm.SetSregs(uintptr(v.fd), s); err != nil {
			return fmt.Errorf("vcpu %d set sregs: %w", v.id, err)
		}
		if v.id != 0 {
			r := *v.resetSregs
			r.ApicBase = s.ApicBase
			v.resetSregs = &r
		}
	}
	regs := &kvm.Regs{RIP: k.entry, RSI: bootParamsAddr, RSP: bootStackTop, RFLAGS: 2}
	if err := kvm.SetRegs(uintptr(m.vcpus[0].fd), regs); err != nil {
		return fmt.Errorf("set BSP regs: %w", err)
	}
	return nil
}

// setLongMode sets up 64-bit mode with the identity map and boot GDT.
func setLongMode(s *kvm.Sregs) {
	s.CR3 = pml4Addr
	s.CR4 = cr4PAE
	s.CR0 = cr0PE | cr0ET | cr0NE | cr0PG
	s.EFER = eferLME | eferLMA
	s.GDT = kvm.Descriptor{Base: gdtAddr, Limit: 4*8 - 1}
	code := kvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: bootCodeSelector, Typ: 0xB, Present: 1, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: bootDataSelector, Typ: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
}
