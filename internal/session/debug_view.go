package session

// The debugger's view of a stopped replay: registers, memory by virtual
// address, breakpoints, and the monitor commands.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/samsara-vmm/samsara/internal/gdbstub"
)

// vcpuOf is vCPU t of the current replay.
func (d *Debugger) vcpuOf(t int) (*vcpu, error) {
	if t < 0 || t >= len(d.run.s.vcpus) {
		return nil, fmt.Errorf("no vCPU %d", t)
	}
	return d.run.s.vcpus[t], nil
}

// Registers reads vCPU t's registers.
func (d *Debugger) Registers(t int) (*gdbstub.Registers, error) {
	v, err := d.vcpuOf(t)
	if err != nil {
		return nil, err
	}
	r, sr, err := v.cpuState()
	if err != nil {
		return nil, err
	}
	f, err := v.FPU()
	if err != nil {
		return nil, err
	}
	g := &gdbstub.Registers{
		GPR:    [16]uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RBP, r.RSP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15},
		RIP:    r.RIP,
		EFLAGS: uint32(r.RFLAGS),
		Seg:    [6]uint32{uint32(sr.CS.Selector), uint32(sr.SS.Selector), uint32(sr.DS.Selector), uint32(sr.ES.Selector), uint32(sr.FS.Selector), uint32(sr.GS.Selector)},
		FSBase: sr.FS.Base, GSBase: sr.GS.Base, CR0: sr.CR0, CR2: sr.CR2, CR3: sr.CR3, CR4: sr.CR4, EFER: sr.EFER,
		XMM: f.XMM, MXCSR: f.MXCSR,
		// fop is the last opcode; FIP/FDP are flat 64-bit addresses here
		// (fiseg/foseg 0).
		FPUCtl: [8]uint32{uint32(f.FCW), uint32(f.FSW), uint32(f.FTWX), 0, uint32(f.LastIP), 0, uint32(f.LastDP), uint32(f.LastOpcode)},
	}
	for i := range g.ST {
		// KVM's fpr slots are 16 bytes, the 80-bit value in the first 10.
		copy(g.ST[i][:], f.FPR[i][:10])
	}
	return g, nil
}

// ReadMemory reads guest virtual memory through vCPU t's page tables.
func (d *Debugger) ReadMemory(t int, addr uint64, n int) ([]byte, error) {
	v, err := d.vcpuOf(t)
	if err != nil {
		return nil, err
	}
	sr, err := v.Sregs()
	if err != nil {
		return nil, err
	}
	return readVirtual(d.run.m.Memory(), sr.CR3, addr, n)
}

// SetBreakpoint arms a hardware breakpoint or watchpoint (gdb's software
// breakpoints too: guest memory is never written).
func (d *Debugger) SetBreakpoint(kind gdbstub.BreakKind, addr uint64, size int) error {
	b := hwBreak{kind: kind, addr: addr, size: size}
	if kind <= gdbstub.BreakHW {
		b.size = 1
	}
	for _, x := range d.bps {
		if x == b {
			return nil
		}
	}
	if err := checkBreakpoint(b, d.run.s.opts.KernelCount); err != nil {
		d.log.Warn("breakpoint refused: " + err.Error())
		return err
	}
	if len(d.bps) == maxHWBreakpoints {
		err := fmt.Errorf("all %d debug registers are in use (breakpoints are hardware breakpoints: the replay never writes guest memory)", maxHWBreakpoints)
		d.log.Warn("breakpoint refused: " + err.Error())
		return err
	}
	d.bps = append(d.bps, b)
	return nil
}

// checkBreakpoint refuses what the debug registers cannot do and, under
// PVM (pvm), user addresses, where a hardware breakpoint is ignored
// (PLATFORM.md, "Stopping exactly"), and read or access watchpoints,
// which the emulator of guest kernel code never fires (debug_hook.go,
// softWatch).
func checkBreakpoint(b hwBreak, pvm bool) error {
	if pvm && b.addr < userSpaceEnd {
		return fmt.Errorf("%#x is a guest user address: under PVM hardware breakpoints and single steps work only in guest kernel code (the host runs guest user code natively and cannot stop it at an instruction)", b.addr)
	}
	if pvm && (b.kind == gdbstub.WatchRead || b.kind == gdbstub.WatchAccess) {
		return fmt.Errorf("read and access watchpoints need data breakpoints, which KVM's emulator of guest kernel code never fires under PVM; use a write watchpoint (found by single-stepping)")
	}
	if !pvm && (b.kind == gdbstub.WatchRead || b.kind == gdbstub.WatchAccess) {
		return fmt.Errorf("read and access watchpoints: without an instruction counter watchpoints are page traps (debug_page.go), which see that an instruction touched the page but not which bytes it read; use a write watchpoint (found by comparing the bytes)")
	}
	if b.kind >= gdbstub.WatchWrite {
		if _, ok := dr7Len[b.size]; !ok || b.addr%uint64(b.size) != 0 {
			return fmt.Errorf("a watchpoint covers 1, 2, 4 or 8 aligned bytes (x86 debug registers); %d bytes at %#x is not one", b.size, b.addr)
		}
	}
	return nil
}

// ClearBreakpoint removes one.
func (d *Debugger) ClearBreakpoint(kind gdbstub.BreakKind, addr uint64, size int) error {
	for i, x := range d.bps {
		if x.kind == kind && x.addr == addr {
			d.bps = append(d.bps[:i:i], d.bps[i+1:]...)
			return nil
		}
	}
	return nil
}

// Monitor runs "monitor when|hash|seek POS|checkpoint|info checkpoints".
func (d *Debugger) Monitor(cmd string) (string, error) {
	f := strings.Fields(cmd)
	switch {
	case len(f) == 1 && f[0] == "when":
		return d.when(), nil
	case len(f) == 1 && f[0] == "hash":
		return d.hash()
	case len(f) == 2 && f[0] == "seek":
		return d.monitorSeek(f[1])
	case len(f) == 1 && f[0] == "checkpoint":
		d.checkpoints = append(d.checkpoints, d.pos)
		return fmt.Sprintf("checkpoint %d at position %v\n", len(d.checkpoints), d.pos), nil
	case len(f) == 2 && f[0] == "info" && f[1] == "checkpoints":
		var b strings.Builder
		for i, p := range d.checkpoints {
			fmt.Fprintf(&b, "%d: position %v (vCPU %d, rip %#x)\n", i+1, p, p.VCPU, p.RIP)
		}
		if b.Len() == 0 {
			b.WriteString("no checkpoints\n")
		}
		fmt.Fprintf(&b, "machine checkpoints (going back replays from the nearest): before chunks %v, %d bytes on disk (at most %d kept, thinned as they age)\n", d.ckpts.chunks(), d.ckpts.bytes(), d.ckpts.limit())
		return b.String(), nil
	}
	return "", fmt.Errorf("unknown monitor command %q (when, hash, seek POSITION, checkpoint, info checkpoints)", cmd)
}

// when describes the current position; its first line is the position
// in the form seek takes.
func (d *Debugger) when() string {
	p := d.pos
	if p.Exits < 0 {
		return fmt.Sprintf("position %v\nbefore chunk %d of %d (vCPU %d)\n", p, p.Chunk, d.chunks, p.VCPU)
	}
	return fmt.Sprintf("position %v\nchunk %d of %d, vCPU %d, %d exits and %d kernel instructions in, rip %#x\n",
		p, p.Chunk, d.chunks, p.VCPU, p.Exits, p.Insns, p.RIP)
}

// hash is the machine digest at the current position: the session's
// digest (memory tree hash and every vCPU's registers) hashed into one.
func (d *Debugger) hash() (string, error) {
	dg, err := d.run.s.digest()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(dg.Memory[:])
	for _, v := range dg.VCPUs {
		h.Write(v[:])
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(dg.VCPUs)))
	h.Write(n[:])
	return fmt.Sprintf("hash %x (memory %x) at position %v\n", h.Sum(nil)[:16], dg.Memory[:8], d.pos), nil
}

// monitorSeek goes to a position: "C" (before chunk C), a position this
// session stopped at ("C.E.I", as `when` prints it), or "checkpoint N".
func (d *Debugger) monitorSeek(arg string) (string, error) {
	var target Position
	if n, err := strconv.Atoi(strings.TrimPrefix(arg, "checkpoint")); strings.HasPrefix(arg, "checkpoint") && err == nil && n >= 1 && n <= len(d.checkpoints) {
		target = d.checkpoints[n-1]
	} else if c, err := strconv.Atoi(arg); err == nil && c >= 0 && c < d.chunks {
		target = Position{Chunk: c, Exits: -1}
	} else if p, ok := d.known(arg); ok {
		target = p
	} else {
		return "", fmt.Errorf("seek %s: not a chunk index below %d, a checkpoint (checkpointN) nor a position this session stopped at", arg, d.chunks)
	}
	if err := d.seek(target, gdbstub.Stop{Thread: target.VCPU}); err != nil {
		return "", err
	}
	return d.when(), nil
}

// known finds a position this session stopped at by its printed form.
func (d *Debugger) known(s string) (Position, bool) {
	for _, p := range append(append([]Position{d.pos}, d.checkpoints...), d.visited...) {
		if p.String() == s {
			return p, true
		}
	}
	return Position{}, false
}
