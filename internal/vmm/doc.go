// Package vmm is the machine: guest memory, vCPUs and their run loop,
// 64-bit boot (kernel loading, e820, page tables, MP table, CPUID and
// command-line policy, kernel symbols), exit dispatch through the
// internal/devices Bus, the virtual clock and its timers, checkpoints, and
// the probe of what this host can do.
//
// `samsara run` uses it alone (Machine.Run). Record and replay drive it
// from internal/session through drive.go: one vCPU entered at a time, its
// exit handled, interrupts injected, state saved and restored.
//
// It may import internal/devices, internal/kvm, internal/pmc (the probe),
// internal/treehash and gokvm; it must not import chunk, commit, ept, log
// or session (internal/layout's test): the machine knows nothing of
// chunks, commit orders, page sets or recordings.
package vmm
