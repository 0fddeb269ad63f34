package daemon

// The scheduler: jobs run while the vCPUs of the running ones fit in the
// budget (--max-vcpus); the rest wait in strict FIFO order, so a large job
// at the head is not starved by small ones behind it. Pure bookkeeping:
// the daemon calls it with its lock held and starts what it returns.

// schedJob is what the scheduler needs of a job.
type schedJob interface {
	// vcpus is how many vCPUs the job holds while it runs.
	vcpus() int
}

// scheduler is the FIFO vCPU budget.
type scheduler struct {
	// max is the vCPU budget.
	max int
	// used is what running jobs hold.
	used int
	// queue holds the waiting jobs, oldest first.
	queue []schedJob
}

// submit queues j and returns the jobs to start now.
func (s *scheduler) submit(j schedJob) []schedJob {
	s.queue = append(s.queue, j)
	return s.next()
}

// done releases a finished job's vCPUs and returns the jobs to start now.
func (s *scheduler) done(j schedJob) []schedJob {
	s.used -= j.vcpus()
	if s.used < 0 {
		panic("scheduler: more vCPUs released than held")
	}
	return s.next()
}

// remove takes a waiting job out of the queue and reports whether it was
// there; the jobs behind it may now start.
func (s *scheduler) remove(j schedJob) (bool, []schedJob) {
	for i, q := range s.queue {
		if q == j {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true, s.next()
		}
	}
	return false, nil
}

// next pops the jobs at the head of the queue that fit.
func (s *scheduler) next() []schedJob {
	var start []schedJob
	for len(s.queue) > 0 && s.used+s.queue[0].vcpus() <= s.max {
		j := s.queue[0]
		s.queue = s.queue[1:]
		s.used += j.vcpus()
		start = append(start, j)
	}
	return start
}
