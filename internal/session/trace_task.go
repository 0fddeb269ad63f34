package session

// Who ran (`samsara trace`, issue 16): the task (thread) each traced
// chunk's vCPU runs, read from the guest kernel's per-CPU current_task
// with the offsets of trace.Kernel. A chunk's marker is followed by its
// task; a traced instruction that writes the vCPU's current_task slot
// (__switch_to's this_cpu_write) switches it, and the new task is read
// after the step. Code that runs unstepped (user code, and on hardware
// virtualization the kernel code a user stretch runs into before its next
// exit) may switch too, so the task is read again after every plain run.

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// kernelHalf is the lowest address of the x86-64 kernel half (48-bit
// canonical addresses: bits 63:47 all set).
const kernelHalf = 0xffff800000000000

// unknownTask stands for a task that could not be read; TaskErrors
// counts those reads.
var unknownTask = trace.Task{PID: -1, TGID: -1, Comm: "?"}

// perCPUBase is the vCPU's kernel per-CPU base: GS base in kernel mode,
// IA32_KERNEL_GS_BASE in user mode and in the kernel's entry code before
// its SWAPGS. Whichever of the two lies in the kernel half is the one.
func (v *vcpu) perCPUBase(sr *kvm.Sregs) (uint64, error) {
	if sr.GS.Base >= kernelHalf {
		return sr.GS.Base, nil
	}
	b, err := v.MSR(vmm.MSRKernelGSBase)
	if err != nil {
		return 0, err
	}
	if b < kernelHalf {
		return 0, fmt.Errorf("neither GS base %#x nor KERNEL_GS_BASE %#x is a kernel address", sr.GS.Base, b)
	}
	return b, nil
}

// readTask reads the vCPU's current task and the guest-physical address
// of its current_task slot.
func (v *vcpu) readTask(k *trace.Kernel, sr *kvm.Sregs) (trace.Task, uint64, error) {
	slot := k.CurrentTask
	if k.PerCPU {
		base, err := v.perCPUBase(sr)
		if err != nil {
			return unknownTask, 0, err
		}
		slot += base
	}
	mem := v.s.m.Memory()
	slotPA, err := translate(mem, sr.CR3, slot)
	if err != nil {
		return unknownTask, 0, fmt.Errorf("current_task: %w", err)
	}
	p, err := readVirtual(mem, sr.CR3, slot, 8)
	if err != nil {
		return unknownTask, 0, fmt.Errorf("current_task: %w", err)
	}
	le := binary.LittleEndian
	t := trace.Task{Addr: le.Uint64(p)}
	field := func(off uint64, n int) ([]byte, error) {
		b, err := readVirtual(mem, sr.CR3, t.Addr+off, n)
		if err != nil {
			return nil, fmt.Errorf("task_struct at %#x: %w", t.Addr, err)
		}
		return b, nil
	}
	pid, err := field(k.PID, 4)
	if err != nil {
		return unknownTask, slotPA, err
	}
	tgid, err := field(k.TGID, 4)
	if err != nil {
		return unknownTask, slotPA, err
	}
	comm, err := field(k.Comm, k.CommLen)
	if err != nil {
		return unknownTask, slotPA, err
	}
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	t.PID, t.TGID, t.Comm = int32(le.Uint32(pid)), int32(le.Uint32(tgid)), string(comm)
	return t, slotPA, nil
}

// expandTask names the vCPU's task in the trace at the current position
// when it is not the one named last in this chunk (always, with force).
func (v *vcpu) expandTask(force bool) error {
	e := v.s.exp
	if e.Kernel == nil || !e.on {
		return nil
	}
	sr, err := v.Sregs()
	if err != nil {
		return err
	}
	t, slotPA, err := v.readTask(e.Kernel, sr)
	if err != nil {
		e.TaskErrors++
		if e.FirstTaskError == "" {
			e.FirstTaskError = fmt.Sprintf("chunk %d, vcpu %d: %v", e.chunk, v.id, err)
		}
	}
	e.slotPA = slotPA
	if !force && t == e.task {
		return nil
	}
	e.task = t
	return e.Set.Task(v.id, uint32(e.chunk), e.index, t)
}

// switchesTask reports whether a stepped instruction wrote the vCPU's
// current_task slot.
func (e *Expander) switchesTask(in *trace.Insn) bool {
	if e.Kernel == nil || e.slotPA == 0 {
		return false
	}
	for _, a := range in.Mem {
		if a.Flags&trace.AccessWrite != 0 && a.Flags&trace.AccessUnmapped == 0 && a.PA <= e.slotPA && e.slotPA < a.PA+uint64(a.Size) {
			return true
		}
	}
	return false
}
