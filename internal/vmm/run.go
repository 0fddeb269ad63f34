package vmm

import (
	"fmt"
	"sync"
	"time"
)

// machineClock is guest time. In `run` mode it is host monotonic time
// since the machine started (plus an offset carried over from a
// checkpoint). In record and replay mode it is virtual: it advances only
// with guest progress (see det_clock.go), so every device reads the same
// time at the same point of the execution in both runs.
type machineClock struct {
	// virtual selects virtual time (record/replay).
	virtual bool
	// vt is the virtual time in ns. Guarded by Machine.mu.
	vt int64
	// start is the host time guest time offset corresponds to.
	start time.Time
	// offset is added to the elapsed time (guest time at restore).
	offset int64
}

func newMachineClock(virtual bool) *machineClock {
	return &machineClock{virtual: virtual, start: time.Now()}
}

// Now returns guest nanoseconds.
func (c *machineClock) Now() int64 {
	if c.virtual {
		return c.vt
	}
	return c.offset + int64(time.Since(c.start))
}

// set makes the clock read t now (checkpoint restore).
func (c *machineClock) set(t int64) {
	c.vt, c.offset, c.start = t, t, time.Now()
}

// Run starts every vCPU and runs the guest until it powers off, fails, or
// the machine is stopped. It returns the guest's exit status.
func (m *Machine) Run() (Result, error) {
	m.started = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(m.vcpus))
	for _, v := range m.vcpus {
		wg.Add(1)
		go func(v *VCPU) {
			defer wg.Done()
			if err := v.loop(); err != nil {
				m.mu.Lock()
				m.stop(-1, fmt.Errorf("vcpu %d: %w", v.id, err))
				m.mu.Unlock()
				errs <- err
			}
		}(v)
	}
	timersDone := make(chan struct{})
	go func() {
		defer close(timersDone)
		m.timerLoop()
	}()
	<-m.stopped
	wg.Wait()
	// The timer loop can still be firing a device timer that kicks a vCPU
	// (which writes its kvm_run page): wait for it before the caller's
	// Close unmaps those pages.
	<-timersDone
	res := Result{ExitStatus: m.status, Elapsed: time.Since(m.started)}
	if !m.initAt.IsZero() {
		res.BootToInit = m.initAt.Sub(m.started)
	}
	return res, m.err
}

// timerLoop fires device timers: it sleeps until the earliest deadline
// (or until a device was reprogrammed) and polls every Timed device.
func (m *Machine) timerLoop() {
	// idlePoll bounds the sleep when no timer is armed, so a device armed
	// without a timerWake poke is still noticed within a guest tick (10 ms
	// at the reference kernel's HZ=100).
	const idlePoll = 10 * time.Millisecond
	t := time.NewTimer(idlePoll)
	defer t.Stop()
	for {
		m.mu.Lock()
		m.pollTimersLocked()
		now := m.clock.Now()
		next, armed := m.nextDeadlineLocked()
		m.mu.Unlock()
		wait := idlePoll
		if armed {
			wait = min(time.Duration(next-now), idlePoll)
		}
		t.Reset(max(wait, 0))
		select {
		case <-m.stopped:
			return
		case <-m.timerWake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
	}
}

// nextDeadlineLocked returns the earliest armed device timer deadline.
// Preconditions: m.mu must be held.
func (m *Machine) nextDeadlineLocked() (next int64, armed bool) {
	for _, d := range m.timed {
		if dl, ok := d.NextDeadline(); ok && (!armed || dl < next) {
			next, armed = dl, true
		}
	}
	return next, armed
}

// pollTimersLocked fires every device timer due at the current time.
// Preconditions: m.mu must be held.
func (m *Machine) pollTimersLocked() {
	now := m.clock.Now()
	for _, d := range m.timed {
		d.Poll(now)
	}
}

// pokeTimers tells the timer loop that a deadline may have changed.
func (m *Machine) pokeTimers() {
	select {
	case m.timerWake <- struct{}{}:
	default:
	}
}
