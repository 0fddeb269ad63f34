// Package gdbstub serves the GDB remote serial protocol (the GDB manual,
// appendix E, "Remote Serial Protocol") for a Target that it declares: the
// packets, their framing and checksums, acknowledgement and no-ack mode,
// the target description, threads, stop replies and monitor commands.
// It knows nothing of KVM, machines or replays; internal/session provides
// a Target over a replay (debug_*.go).
//
// Threads are the target's CPUs: thread id i+1 is CPU i (the protocol
// reserves 0 for "any thread" and -1 for "all threads").
//
// A replay cannot be changed, so every write (memory, registers) is
// refused with an error reply.
package gdbstub

// StopReason is why the target stopped.
type StopReason int

// Stop reasons, as the stop reply reports them (GDB manual, E.3 "Stop
// Reply Packets").
const (
	// StopStep: a single step (or a stop with no other reason) ended.
	StopStep StopReason = iota
	// StopSWBreak: a software breakpoint (Z0) was hit.
	StopSWBreak
	// StopHWBreak: a hardware breakpoint (Z1) was hit.
	StopHWBreak
	// StopWatch: a watchpoint (Z2, Z3, Z4) was hit; Stop.Addr and
	// Stop.Watch say which.
	StopWatch
	// StopInterrupt: the user interrupted (Ctrl-C).
	StopInterrupt
	// StopHistoryBegin: reverse execution reached the start of the
	// recording ("replaylog:begin").
	StopHistoryBegin
	// StopHistoryEnd: forward execution reached the end of the recording
	// ("replaylog:end").
	StopHistoryEnd
	// StopExited: the machine stopped for good (Stop.ExitCode).
	StopExited
)

// BreakKind is a breakpoint or watchpoint type: the Z packet's type.
type BreakKind int

// Breakpoint and watchpoint kinds (GDB manual, E.2, "Z type,addr,kind").
const (
	BreakSW     BreakKind = 0 // Z0: software breakpoint
	BreakHW     BreakKind = 1 // Z1: hardware breakpoint
	WatchWrite  BreakKind = 2 // Z2: write watchpoint
	WatchRead   BreakKind = 3 // Z3: read watchpoint
	WatchAccess BreakKind = 4 // Z4: access watchpoint
)

// Stop is where and why the target stopped.
type Stop struct {
	Reason StopReason
	// Thread is the CPU that stopped (0-based).
	Thread int
	// Addr is the watched address that was hit (StopWatch).
	Addr uint64
	// Watch is the kind of watchpoint hit (StopWatch).
	Watch BreakKind
	// ExitCode is the guest's exit status (StopExited).
	ExitCode int
}

// Target is what the server debugs. Every method is called from the
// server's one goroutine, except Interrupt, which may be called while
// Continue, Step, ReverseContinue or ReverseStep runs and must make it
// return soon with a StopInterrupt.
type Target interface {
	// Threads is the number of CPUs.
	Threads() int
	// Stopped is where the target stands now (the answer to '?').
	Stopped() Stop
	// Registers reads one CPU's registers.
	Registers(thread int) (*Registers, error)
	// ReadMemory reads n bytes at virtual address addr through the
	// page tables of thread; an unmapped address is an error.
	ReadMemory(thread int, addr uint64, n int) ([]byte, error)
	// Continue runs forward until a breakpoint, a watchpoint, the end
	// or an interrupt.
	Continue() (Stop, error)
	// Step executes one instruction of thread, forwards.
	Step(thread int) (Stop, error)
	// ReverseContinue runs backwards to the last breakpoint or
	// watchpoint hit before now, or to the start of the history.
	ReverseContinue() (Stop, error)
	// ReverseStep goes back to thread's previous instruction.
	ReverseStep(thread int) (Stop, error)
	// Interrupt asks a running Continue or step to stop (Ctrl-C).
	Interrupt()
	// SetBreakpoint inserts a breakpoint or watchpoint of kind at addr
	// covering size bytes (the Z packet's kind field: the length for a
	// watchpoint).
	SetBreakpoint(kind BreakKind, addr uint64, size int) error
	// ClearBreakpoint removes one.
	ClearBreakpoint(kind BreakKind, addr uint64, size int) error
	// Monitor runs a monitor command ("monitor when" in gdb) and returns
	// its output.
	Monitor(cmd string) (string, error)
}
