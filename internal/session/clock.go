package session

// Guest time during record and replay.
//
// The machine's clock (vmm.Machine.VirtualTime) is virtual: it moves only
// at points both runs share, so every timer fires, and every device clock
// reads the same, at the same point of the execution in the recording and
// in its replay. It moves at three kinds of points:
//
//   - each exit adds nsPerExit (det.go), a fixed step;
//   - each chunk's end adds the host time the recorder measured for that
//     chunk (monotonic clock, since the previous chunk ended: in the
//     serialized recorder the chunk's own run, in the parallel recorder
//     the time since the previous commit), capped at maxGuestMicros; the
//     chunk record holds it (log.Chunk.GuestMicros) and replay adds the
//     logged value at the same point;
//   - when no vCPU can run, time jumps to the next timer deadline (an idle
//     guest does not wait in real time; it sees its sleep end at once).
//
// So a guest that runs sees about as much time pass as it ran, recorded
// or not, and its timers fire at the first chunk end after their
// deadline. What it costs: one varint per chunk in the log, two or three
// bytes before compression. A vCPU that stays in guest user mode without
// any exit ends its chunk only at a state stop (det_stop.go: when a timer
// is due, after stateStopAfter), so its timers fire that late; the
// reference kernel counts the tick periods that passed meanwhile from
// the tick port (vmm.TickPort, kernel patch 0007), so its clock does not
// fall behind.

import (
	"time"

	"github.com/samsara-vmm/samsara/internal/log"
)

// maxGuestMicros caps what one chunk end adds: a host hiccup (swapping, a
// stopped process, a long squash storm) longer than 10 s is not time the
// guest spent running, and a jump that large would fire every timer at
// once. 10 s is above any chunk seen (the serialized recorder fails a
// chunk stuck in user mode after userSpinLimit, 60 s, but such a chunk
// is an error anyway).
const maxGuestMicros = 10_000_000

// guestMicros is the logged form of a measured chunk time.
func guestMicros(d time.Duration) uint32 {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us > maxGuestMicros:
		return maxGuestMicros
	}
	return uint32(us)
}

// chunkEnded applies what a finished chunk does to the clock: it adds the
// chunk's logged guest time and fires the timers that became due.
func (s *Session) chunkEnded(rec *log.Chunk) {
	s.m.AdvanceTime(int64(rec.GuestMicros)*int64(time.Microsecond), true)
}
