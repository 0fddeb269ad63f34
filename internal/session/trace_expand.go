package session

// Expansion of a replay into an execution trace (`samsara trace`, issue
// 16): the replay runs as Replay does, and verifies the same way, while
// every instruction the platform can single-step is stepped and written
// to an internal/trace Set with its memory accesses. Under PVM a single
// step works only in guest kernel code (shared/PLATFORM.md, "Stopping
// exactly"): user code runs unstepped, and the trace says so with a
// KindUser event whose instruction count is unknown.
//
// The hooks in det.go (expandChunk, expandInject, expandEnter,
// expandRunTo) do nothing when no Expander is set. Only one vCPU runs at
// a time in the serialized replayer, so the Expander needs no lock.

import (
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"

	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/trace"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// Expander says what to trace and where to write it.
type Expander struct {
	// Set receives the trace.
	Set *trace.Set
	// VCPU limits the trace to one vCPU (-1: every vCPU).
	VCPU int
	// FromChunk and ToChunk limit it to chunks FromChunk..ToChunk
	// (ToChunk < 0: to the end).
	FromChunk, ToChunk int
	// FromIndex and Until narrow the first and the last of those chunks
	// to the instructions and events at positions FromIndex.. and
	// ..Until-1 of the chunk (Until 0: to its end; trace --from/--to
	// C.I); the whole chunk is still stepped, so positions are those of a
	// full trace.
	FromIndex, Until uint64
	// Values records the bytes each access reads or writes.
	Values bool
	// UserSteps single-steps user code too. Only where a single step of
	// user code stops after the instruction: hardware virtualization
	// (VMX/SVM), not PVM (trace_user.go).
	UserSteps bool
	// UserOnly writes user instructions only (kernel code is still
	// stepped, so positions are those of a full trace).
	UserOnly bool

	// chunk is the index of the chunk running (-1 before the first).
	chunk int
	// index is the next instruction's index in the chunk.
	index uint64
	// on: this chunk is traced.
	on bool
	// inUser: the vCPU runs user code since the last KindUser event.
	inUser bool
	// vec is the vector injected last (expandDelivered).
	vec uint8
	// Unseen counts steps that delivered an injected interrupt, whose
	// instruction is not written (see expandStep).
	Unseen uint64
	// Kernel, when set, names each chunk's task in the trace (who ran,
	// trace_task.go).
	Kernel *trace.Kernel
	// TaskErrors counts tasks that could not be read (written as pid -1,
	// comm "?"); FirstTaskError says why the first could not.
	TaskErrors     uint64
	FirstTaskError string

	// task is the task named last in this chunk, slotPA the
	// guest-physical address of the vCPU's current_task slot (0: unknown).
	task   trace.Task
	slotPA uint64
	// dma holds the device's writes into guest memory during the exit
	// being handled (trace_events.go).
	dma []pendingDMA
	// FramesUnseen counts delivered interrupts whose frame was not found
	// on the handler's stack (trace_events.go, expandFrame).
	FramesUnseen uint64
}

// Expand replays the recording as Replay does and writes the trace e
// asks for; the error is Replay's for a diverged or damaged recording.
func (s *Session) Expand(records []log.Record, e *Expander) (vmm.Result, error) {
	e.chunk = -1
	s.exp = e
	s.observeDMA(e)
	defer s.m.ObserveDMA(nil)
	return s.Replay(records)
}

// expandChunk is runChunk's hook at a chunk's start: the chunk marker.
func (v *vcpu) expandChunk(c *chunkRun) error {
	e := v.s.exp
	if e == nil || c.want == nil {
		return nil
	}
	e.chunk++
	e.index = 0
	e.inUser = false
	e.on = (e.VCPU < 0 || e.VCPU == v.id) && e.chunk >= e.FromChunk && (e.ToChunk < 0 || e.chunk <= e.ToChunk)
	if !e.on {
		return nil
	}
	regs, err := v.Regs()
	if err != nil {
		return err
	}
	if err := e.Set.Chunk(v.id, uint32(e.chunk), regs.RIP); err != nil {
		return err
	}
	return v.expandTask(true)
}

// inWindow reports whether position index of the current chunk is
// written: the chunk is traced and the index lies in the window.
func (e *Expander) inWindow(index uint64) bool {
	switch {
	case !e.on:
		return false
	case e.chunk == e.FromChunk && index < e.FromIndex:
		return false
	case e.chunk == e.ToChunk && e.Until != 0 && index >= e.Until:
		return false
	}
	return true
}

// writes reports whether instruction in is written: its position lies
// in the window, and it is not kernel code in a --user-only trace.
func (e *Expander) writes(in *trace.Insn) bool {
	return e.inWindow(in.Index) && !(e.UserOnly && in.CPL == 0)
}

// expandInject is injectAtEntry's hook: an interrupt injected.
func (v *vcpu) expandInject(vec uint8, injected bool) error {
	e := v.s.exp
	if e == nil || !e.on || !injected {
		return nil
	}
	e.vec = vec
	if !e.inWindow(e.index) {
		return nil
	}
	return e.Set.Inject(v.id, uint32(e.chunk), e.index, vec)
}

// expandEnter is runChunk's entry: the debugger's enter, or, when this
// chunk is traced, single steps up to the next real exit.
func (v *vcpu) expandEnter(c *chunkRun) error {
	e := v.s.exp
	if e == nil || !e.on || c.want == nil {
		return v.enter(c)
	}
	for {
		done, err := v.expandStep(c, false)
		if done || err != nil {
			return err
		}
	}
}

// expandRunTo is replayChunkEnd's run to a preemption or privilege-change
// point: runTo, or, when this chunk is traced, single steps to it.
func (v *vcpu) expandRunTo(c *chunkRun, target log.Point, injected, stateMatch bool) error {
	e := v.s.exp
	if e == nil || !e.on {
		return v.runTo(target, injected, stateMatch)
	}
	// The last step leaves single-stepping armed: the next chunk, maybe
	// not traced, must run plainly (as runTo leaves it).
	defer v.SetGuestDebug(0, nil)
	want := pointWant(target)
	for {
		if v.s.m.IsStopped() {
			return errMachineStopped
		}
		d, regs, at, err := v.standing(target, stateMatch)
		if at || err != nil {
			return err
		}
		got := fmt.Sprintf("+%d at RIP %#x", d, regs.RIP)
		if d > target.KernelInsns {
			return &DivergenceError{VCPU: v.id, What: "preemption point passed", Want: want, Got: got}
		}
		if d+1 == target.KernelInsns && !c.injectedNow {
			if landed, err := v.expandLastStep(target, regs, stateMatch); landed || err != nil {
				return err
			}
		}
		exited, err := v.expandStep(c, true)
		if err != nil {
			return err
		}
		if exited {
			return v.exitedBefore(target, stateMatch)
		}
	}
}

// expandLastStep lands on a point that lies right after an instruction
// whose single step also runs the next one (stiShadowed, iretFollower):
// measured in a fresh make test under PVM, a preemption point between
// do_idle's LFENCE and CLI was passed by one instruction, the step of the
// LFENCE having run the CLI too ("preemption point passed"). There the
// instruction is decoded, runTo lands as replay does (a breakpoint at the
// point's RIP stops before the next instruction), and the instruction is
// written. It reports whether it landed.
func (v *vcpu) expandLastStep(target log.Point, regs *kvm.Regs, stateMatch bool) (bool, error) {
	sr, err := v.Sregs()
	if err != nil {
		return false, err
	}
	in := v.expandDecode(regs, sr, 0)
	next := v.stepFollower(in, regs, sr)
	if next == nil || next.RIP != target.RIP {
		return false, nil
	}
	if err := v.runTo(target, false, stateMatch); err != nil {
		return true, err
	}
	in.NextRIP = target.RIP
	return true, v.expandOne(in)
}
