package session

// State-matching stops of the serialized recorder (issue 11), for
// hardware virtualization (SVM/VMX) without an instruction counter.
//
// Without a counter a chunk can end only at an exit, the one kind of point
// replay finds again by counting exits. A vCPU that spins in the guest
// without exits while the vCPU it waits for is not running (the boot CPU's
// `while (!cpumask_test_cpu(cpu, cpu_callin_mask)) schedule();` in
// do_boot_cpu, a user thread spinning on a flag) would keep the turn
// forever: measured in the emulated SVM host, 2 of 2 cold-boot recordings
// on 2 vCPUs stalled there, in SMP bring-up. The kernel's cpu_relax loops
// exit through the yield port (kernel patch 0005); these do not.
//
// So when such a vCPU should give up its turn (preemptionNeeded), the
// watchdog kicks it, and the recorder samples its state at the RIP where
// the kick found it, then runs it to its next pass at that RIP (a
// hardware breakpoint, after one single step off it). A pass whose state
// (matchHash: general registers, RIP, flags, segments, control registers,
// x87/SSE) equals the last sample is a spin: the chunk ends there with
// ReasonStateMatch. Replay runs the chunk through its exits and then to
// the first breakpoint hit at that RIP with the same state (runTo). Two
// instants with the same vCPU state have the same future as far as the
// vCPU's registers go; what the state does not cover, the memory the
// chunk wrote between the two instants, is covered by the final memory
// digest, which fails such a replay as diverged rather than letting it
// pass. A vCPU whose passes differ (it computes) is not stopped: it runs
// on to its next exit, as before.

import (
	"errors"
	"fmt"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	kvmsys "github.com/samsara-vmm/samsara/internal/kvm"
	"github.com/samsara-vmm/samsara/internal/log"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// matchPasses bounds the breakpoint passes one try makes before it gives
// up (a loop whose state changes on every pass is not a spin). Each pass
// costs a single step and a breakpoint exit; a pure spin matches on its
// first.
const matchPasses = 4

// matchOutcome is what a state-matching try found.
type matchOutcome int

const (
	// matchNone: no stop; the chunk goes on with its next KVM_RUN.
	matchNone matchOutcome = iota
	// matchStopped: the vCPU stands at a repeated state; the chunk ends.
	matchStopped
	// matchExited: a real exit came first; runChunk handles it as one.
	matchExited
)

// maybeStateMatch is the no-counter recorder's preemption (the analogue
// of maybePreempt): after a kick, when the chunk should give up its turn,
// it looks for a repeated state.
func (v *vcpu) maybeStateMatch(c *chunkRun) (matchOutcome, error) {
	elapsed := time.Since(c.started)
	if c.inject || elapsed < preemptAfter || c.injectedSinceExit && elapsed < preemptInjectedAfter {
		return matchNone, nil
	}
	if !v.s.preemptionNeeded(v, c.started) || time.Now().Before(c.matchNext) {
		return matchNone, nil
	}
	out, err := v.tryStateMatch()
	if out == matchNone {
		// A loop whose state changes (a computation) fails every try;
		// back off so that tries cost a bounded share of the chunk.
		c.matchGap = min(max(2*c.matchGap, preemptAfter), matchGapMax)
		c.matchNext = time.Now().Add(c.matchGap)
	}
	return out, err
}

// matchGapMax caps the back-off between failed state-matching tries of
// one chunk: a spin that began after many failed tries is still stopped
// within a second.
const matchGapMax = time.Second

// tryStateMatch samples the state where the vCPU stands and runs it
// through up to matchPasses passes at the same RIP, comparing each with
// the previous one.
func (v *vcpu) tryStateMatch() (matchOutcome, error) {
	defer v.SetGuestDebug(0, nil)
	regs, err := v.Regs()
	if err != nil {
		return matchNone, err
	}
	if v.atRepString(regs.RIP) {
		// A breakpoint stops a REP string instruction only before its
		// first iteration, not where RCX says it stands.
		return matchNone, nil
	}
	rip := regs.RIP
	v.trace("STATE-TRY vcpu %d rip %#x", v.id, rip)
	prev, err := v.matchHash(regs)
	if err != nil {
		return matchNone, err
	}
	for pass := 0; pass < matchPasses; pass++ {
		if v.s.m.IsStopped() {
			return matchNone, nil
		}
		out, err := v.matchPass(rip)
		if out != matchNone || err != nil {
			return out, err
		}
		if regs, err = v.Regs(); err != nil {
			return matchNone, err
		}
		if regs.RIP != rip {
			v.trace("STATE-TRY vcpu %d stopped at %#x, not %#x", v.id, regs.RIP, rip)
			return matchNone, nil
		}
		h, err := v.matchHash(regs)
		if err != nil {
			return matchNone, err
		}
		v.trace("STATE-MATCH vcpu %d rip %#x pass %d same %v", v.id, rip, pass, h == prev)
		if h == prev {
			return matchStopped, nil
		}
		prev = h
	}
	return matchNone, nil
}

// matchPassLimit bounds one pass of tryStateMatch: a loop that takes
// longer to come back to the sampled RIP is no short spin (the watchdog's
// kicks, every preemptAfter, arrive meanwhile and are ignored).
const matchPassLimit = 200 * time.Millisecond

// matchPass runs the vCPU off rip by one single step, then to its next
// execution of rip (a hardware breakpoint), for at most matchPassLimit.
// It reports matchExited for a real exit on the way; otherwise the vCPU
// stands at rip when its last exit is a debug exit.
func (v *vcpu) matchPass(rip uint64) (matchOutcome, error) {
	deadline := time.Now().Add(matchPassLimit)
	pre, err := v.Regs()
	if err != nil {
		return matchNone, err
	}
	for _, step := range []bool{true, false} {
		for {
			exited, err := v.stepTowards(rip, step, pre) // the step starts at rip
			if err != nil || exited {
				v.trace("STATE-TRY vcpu %d exit %d err %v", v.id, v.ExitReason(), err)
				return matchExited, err
			}
			if step || time.Now().After(deadline) || v.s.m.IsStopped() {
				break
			}
			regs, err := v.Regs()
			if err != nil {
				return matchNone, err
			}
			if regs.RIP == rip {
				break
			}
		}
	}
	return matchNone, nil
}

// runToPageBreak is stepTowards' breakpoint on hardware virtualization:
// the 4 KiB guest page holding rip is made inaccessible (vmm.ProtectPage),
// so the vCPU's first fetch from it (or access to it) ends KVM_RUN with
// EFAULT before that instruction runs; from there single steps, with the
// page given back, walk it until the vCPU stands at rip or has left the
// page, which is then taken away again. Neither kind of breakpoint works
// in the emulated SVM host (measured: KVM_GUESTDBG_USE_HW_BP never fired
// in 200 ms passes over a loop the vCPU was seen to repeat; an int3 with
// KVM_GUESTDBG_USE_SW_BP reached the guest, a kernel oops, because QEMU's
// TCG checks SVM's software-interrupt intercept for INT3 rather than the
// #BP one); single steps and EFAULT do. It reports a real exit, and
// leaves the vCPU at rip when it got there (the caller compares RIP).
func (v *vcpu) runToPageBreak(rip uint64) (exited bool, err error) {
	gpa, err := v.CodeAddress(rip)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(runToCheckEvery)
	for time.Now().Before(deadline) {
		// No single step left armed from the caller's last step.
		if err := v.SetGuestDebug(0, nil); err != nil {
			return false, fmt.Errorf("KVM_SET_GUEST_DEBUG: %w", err)
		}
		trapped, exited, err := v.enterTrapped(gpa)
		if !trapped || exited || err != nil {
			return exited, err // a real exit (the caller handles it), a kick, the bound
		}
		at, exited, err := v.walkPage(rip)
		if at || exited || err != nil {
			return exited, err
		}
	}
	return false, nil
}

// enterTrapped runs the vCPU once, for at most runToCheckEvery, with the
// 4 KiB guest page at gpa inaccessible (vmm.ProtectPage), so that its
// first access to the page ends KVM_RUN with EFAULT before it happens
// (trapped). It reports a real exit, or neither (a kick, the bound).
func (v *vcpu) enterTrapped(gpa uint64) (trapped, exited bool, err error) {
	if err := v.ProtectPage(gpa, true); err != nil {
		return false, false, err
	}
	runErr, timerErr := v.enterTimed(runToCheckEvery)
	if err := v.ProtectPage(gpa, false); err != nil {
		return false, false, err
	}
	switch {
	case timerErr != nil:
		return false, false, timerErr
	case runErr == nil:
		return false, true, nil
	case errors.Is(runErr, vmm.ErrInterrupted):
		return false, false, nil
	case !errors.Is(runErr, unix.EFAULT):
		return false, false, runErr
	}
	return true, false, nil
}

// walkPageSteps bounds the single steps that walk one entry into the
// protected page: 4 KiB holds at most ~4096 instructions, and a loop
// inside one page that never reaches rip is no pass towards it.
const walkPageSteps = 4096

// walkPage single-steps the vCPU, which stands at an instruction that
// touched rip's page, until it stands at rip (at) or at an instruction
// outside that page.
func (v *vcpu) walkPage(rip uint64) (at, exited bool, err error) {
	for i := 0; i < walkPageSteps; i++ {
		regs, err := v.Regs()
		if err != nil {
			return false, false, err
		}
		if regs.RIP == rip {
			return true, false, nil
		}
		if i > 0 && regs.RIP&^0xfff != rip&^0xfff {
			return false, false, nil
		}
		exited, err := v.stepTowards(regs.RIP, true, regs)
		if err != nil || exited {
			return false, exited, err
		}
	}
	return false, false, nil
}

// finishStateMatch ends a chunk at a state-matching stop: End.Regs is the
// full-state hash replay matches against.
func (v *vcpu) finishStateMatch(rec log.Chunk) (log.Chunk, error) {
	rec, err := v.finishChunk(rec, log.ReasonStateMatch)
	if err != nil {
		return rec, err
	}
	regs, err := v.Regs()
	if err != nil {
		return rec, err
	}
	rec.End.KernelInsns = 0
	rec.End.Regs, err = v.matchHash(regs)
	return rec, err
}

// matchHash hashes the vCPU state a state-matching stop compares: the
// general registers, RIP and flags (regsHash), the segment registers and
// their bases, the control registers and EFER, and the x87/SSE state.
func (v *vcpu) matchHash(regs *kvm.Regs) (uint64, error) {
	s, err := v.Sregs()
	if err != nil {
		return 0, err
	}
	f, err := kvmsys.GetFPU(v.FD())
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_FPU: %w", err)
	}
	h := fnv64(regsHash(regs))
	for _, seg := range []kvm.Segment{s.CS, s.DS, s.ES, s.FS, s.GS, s.SS, s.TR, s.LDT} {
		h = h.add(uint64(seg.Selector), seg.Base)
	}
	h = h.add(s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, uint64(f.FCW), uint64(f.FSW), uint64(f.FTWX), uint64(f.MXCSR))
	for i := range f.FPR {
		h = h.bytes(f.FPR[i][:])
	}
	for i := range f.XMM {
		h = h.bytes(f.XMM[i][:])
	}
	return uint64(v.stackHash(h, s.CR3, regs.RSP)), nil
}

// matchStackBytes is how much of the stack above RSP matchHash covers:
// the return addresses of the last few calls. Registers alone did not
// tell apart two loops that call the same function (measured in the
// emulated host: do_boot_cpu's two `schedule()` loops, before and after
// it sets the callout mask, had equal registers inside schedule(); replay
// stopped in the first loop where the recording had stopped in the
// second, and diverged a chunk later).
const matchStackBytes = 512

// stackHash adds the guest stack's top matchStackBytes (as far as they
// are mapped) to h.
func (v *vcpu) stackHash(h fnv64, cr3, rsp uint64) fnv64 {
	mem := v.s.m.Memory()
	for va, end := rsp, rsp+matchStackBytes; va < end; {
		pa, err := translate(mem, cr3, va)
		if err != nil {
			break
		}
		n := min(end-va, 4096-va&0xfff)
		if pa+n > uint64(len(mem)) {
			break
		}
		h = h.bytes(mem[pa : pa+n])
		va += n
	}
	return h
}

// fnv64 is an FNV-1a hash being built (regsHash's function).
type fnv64 uint64

func (h fnv64) bytes(b []byte) fnv64 {
	for _, c := range b {
		h = (h ^ fnv64(c)) * 1099511628211
	}
	return h
}

func (h fnv64) add(xs ...uint64) fnv64 {
	for _, x := range xs {
		for i := 0; i < 8; i++ {
			h = (h ^ fnv64(x>>(8*i)&0xff)) * 1099511628211
		}
	}
	return h
}
