package vmm

import (
	"fmt"
	"sync"
	"time"
)

// wallClock is guest time in `run` mode: host monotonic time since the
// machine started (plus an offset carried over from a checkpoint).
// Record/replay will substitute a clock derived from guest progress.
type wallClock struct {
	// start is the host time guest time 0 corresponds to.
	start time.Time
	// offset is added to the elapsed time (guest time at restore).
	offset int64
}

func newWallClock() *wallClock { return &wallClock{start: time.Now()} }

// Now returns guest nanoseconds.
func (c *wallClock) Now() int64 { return c.offset + int64(time.Since(c.start)) }

// Run starts every vCPU and runs the guest until it powers off, fails, or
// the machine is stopped. It returns the guest's exit status.
func (m *Machine) Run() (Result, error) {
	m.started = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(m.vcpus))
	for _, v := range m.vcpus {
		wg.Add(1)
		go func(v *vcpu) {
			defer wg.Done()
			if err := v.loop(); err != nil {
				m.mu.Lock()
				m.stop(-1, fmt.Errorf("vcpu %d: %w", v.id, err))
				m.mu.Unlock()
				errs <- err
			}
		}(v)
	}
	go m.timerLoop()
	<-m.stopped
	wg.Wait()
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
		now := m.clock.Now()
		next := int64(-1)
		for _, d := range m.timed {
			d.Poll(now)
			if dl, ok := d.NextDeadline(); ok && (next < 0 || dl < next) {
				next = dl
			}
		}
		m.mu.Unlock()
		wait := idlePoll
		if next >= 0 {
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

// pokeTimers tells the timer loop that a deadline may have changed.
func (m *Machine) pokeTimers() {
	select {
	case m.timerWake <- struct{}{}:
	default:
	}
}
