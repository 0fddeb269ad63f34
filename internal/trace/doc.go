// Package trace holds the formats of `samsara trace`, the expansion of a
// recording into an execution trace (ReTrace, VMware 2007): the native
// format, a text format for reading and diffing, and ChampSim's input
// records, plus the decoding of an instruction's memory operands. It runs
// no machine: internal/session single-steps the replay and hands every
// event to a Set (the layout test keeps vmm, session and kvm out).
//
// # Directory
//
// A trace is a directory with one file per vCPU: vcpuN.trace.zst (native),
// vcpuN.txt (text) or vcpuN.champsim (ChampSim). The directory is written
// under a temporary name (DIR.partial) and renamed to DIR only once the
// replay matched the recording; a failed or diverged expansion removes it,
// so a directory called DIR is always a complete, verified trace.
//
// # Native format (version 3)
//
// A file is a 16-byte header, then one zstd stream of records:
//
//	header: magic "SMTRACE\x00" (8 bytes), version u32, vcpu u32
//	record: kind u8, then by kind (all little-endian):
//	  KindChunk    chunk u32, rip u64                    a chunk of this vCPU starts
//	  KindInsn     chunk u32, index u64, rip u64, cpl u8,
//	               len u8, bytes[len], nmem u8,
//	               nmem x (va u64, pa u64, size u16, flags u8,
//	               [value u64 if flags&8])
//	                                                     one executed instruction
//	  KindInject   chunk u32, index u64, vector u8       an interrupt injected before
//	                                                     instruction index
//	  KindUser     chunk u32, index u64, rip u64         user code ran here, not traced
//	                                                     (instruction count unknown)
//	  KindHalt     chunk u32, index u64, rip u64         HLT (or STI; HLT) ran unstepped
//	  KindFault    chunk u32, index u64, rip u64         the instruction at index raised an
//	                                                     exception: on hardware
//	                                                     virtualization its handler ran
//	                                                     untraced within the step and the
//	                                                     instruction, retried, is written
//	                                                     next; under PVM (kernel code) the
//	                                                     step stopped in the handler, whose
//	                                                     instructions follow, and the
//	                                                     instruction is not written (it did
//	                                                     not retire)
//	  KindTask     chunk u32, index u64, task u64,       the vCPU runs this task from
//	               pid i32, tgid i32, len u8,            instruction index on (who ran)
//	               comm[len]
//	  KindDevice   chunk u32, index u64, flags u8,       a device access exited here, after
//	               addr u64, size u8, count u16,         the instruction before index: flags
//	               len u16, data[len]                    1 MMIO (else port), 2 write (else
//	                                                     read); data is what the guest wrote
//	                                                     or the device answered (count
//	                                                     elements of size bytes)
//	  KindDMA      chunk u32, index u64, pa u64,         a device wrote len bytes of guest
//	               len u32, data[len]                    memory at pa while that exit was
//	                                                     handled (virtio-blk)
//	  KindFrame    chunk u32, index u64, va u64, pa u64, the frame the delivery recorded just
//	               n u8, n x word u64                    before pushed at va (pa): n is 5
//	                                                     (RIP, CS, RFLAGS, RSP, SS) or 6 (an
//	                                                     error code first)
//	  KindEnd      instructions u64                      the expansion completed
//
// index is the instruction's index among the stepped instructions of its
// chunk (0-based); the position of an instruction is (chunk, vcpu, index).
// Access flags: 1 read, 2 write, 4 unmapped (pa is 0: the page walk found
// no present entry), 8 value (`trace --values`: the first min(size, 8)
// bytes accessed, read before the instruction for a load and after it for
// a store or read-modify-write). A file without KindEnd as its last record is
// incomplete. Bump Version when a record changes (version 2 added
// KindTask and KindFault; version 3 KindDevice, KindDMA and KindFrame).
//
// # Who ran
//
// With the guest kernel's System.map and task-offsets (Kernel), each
// traced chunk's marker is followed by a KindTask record naming the task
// (thread) the vCPU runs, read from the kernel's per-CPU current_task, and
// another one wherever a traced instruction switches the vCPU to another
// task (a write to its current_task, in __switch_to). The directory then
// also holds whoran.txt: per vCPU and task, the chunks that started with
// it running, its traced instructions and its stretches of untraced user
// code. ChampSim files hold instructions only.
//
// # Text format
//
// One line per record, fields separated by spaces, for reading and diff:
//
//	C chunk=12 vcpu=0 rip=ffffffff81001234
//	I 12.0.345 rip=ffffffff81001234 cpl=0 bytes=488b07 "mov rax, qword ptr [rdi]" r:va=..,pa=..,8
//	J 12.0.345 vector=236
//	U 12.0.345 rip=401000 user code not traced on this platform (instruction count unknown)
//	F 12.0.346 rip=401234 exception raised by this instruction (its frame follows when found)
//	T 12.0.0 pid=57 tgid=57 comm="threads2" task=ffff888003a1c000
//	D 12.0.346 port out addr=3f8 size=1 count=1 data=41
//	M 12.0.346 dma pa=3a21000 len=4096 data=...
//	P 12.0.345 frame va=ffffc90000003f58 pa=... rip=ffffffff81001234 cs=10 rflags=246 rsp=... ss=18
//	E instructions=1234
//
// # ChampSim format
//
// ChampSim's input_instr (inc/trace_instruction.h), 64 bytes, packed,
// little-endian: ip u64, is_branch u8, branch_taken u8,
// destination_registers[2] u8, source_registers[4] u8,
// destination_memory[2] u64, source_memory[4] u64. Memory addresses are
// guest-physical (virtual where unmapped). Register numbers are those of
// Pin's REG enum that ChampSim's tracer writes (champsim_tracer.cpp),
// truncated to 8 bits: RDI 3, RSI 4, RBP 5, RSP 6 (REG_STACK_POINTER),
// RBX 7, RDX 8, RCX 9, RAX 10, R8-R15 11-18, RFLAGS 25 (REG_FLAGS), RIP 26
// (REG_INSTRUCTION_POINTER); XMM0-15 are 64-79 (only dependencies: ChampSim
// interprets 6, 25 and 26, from which it infers the branch type, and the
// registers of branches are written so that its inference matches the
// decoded instruction). Only instructions are written; chunk markers and
// events are not.
package trace
