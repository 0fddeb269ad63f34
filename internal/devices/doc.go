// Package devices holds samsara's userspace device models: the 16550A UART
// (COM1), the local APICs and the APIC bus between them, the IOAPIC, the
// 8254 PIT, the MC146818 RTC, the stub 8259A PIC, virtio-blk over the
// virtio-mmio transport, and the copy-on-write disk overlay behind it; and
// Bus, the table of port and MMIO ranges the machine's exit dispatch looks
// a guest access up in.
//
// The models are plain Go: no KVM, no gokvm, and no other samsara package
// is imported here (internal/layout's test checks it), so every register
// can be unit-tested without /dev/kvm. What a device needs from the
// machine comes in through the small interfaces in device.go (IRQLine,
// Clock, APICHooks, BlockBackend); the machine (internal/vmm) creates the
// devices, takes every guest access and timer poll under its one mutex,
// and stores each device's Snapshot state in its checkpoints, so the
// snapshot structs' field names and types are part of the checkpoint
// format (internal/snapshot, whose version rules say when to bump it).
package devices
