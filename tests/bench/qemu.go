package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// qemuBin is the peer VMM (Debian's qemu-system-x86, 7.2 on this
// project's machines; see PLATFORM.md, "The peer on this machine").
const qemuBin = "qemu-system-x86_64"

// qemuMem matches samsara's default guest memory (record --mem "256M").
const qemuMem = "256"

// qemuRunner runs the reference guest under QEMU. The guest's init takes
// the program from the kernel command line after " -- " when there is no
// samsara control page, prints "init: exit status N" and resets the
// machine, which -no-reboot turns into QEMU exiting
// (guest-images/init/init.c).
type qemuRunner struct {
	// kernel and initrd are the guest, the same files samsara boots.
	kernel, initrd string
	// cmdline is `samsara cmdline`, the guest command line samsara uses.
	cmdline string
	// dir holds the rr logs.
	dir string
	// timeout bounds one command.
	timeout time.Duration
}

// exitStatusRE is init's last line when it runs without samsara.
var exitStatusRE = regexp.MustCompile(`init: exit status (\d+)`)

// printkTimeRE is a kernel log line's timestamp ("[    1.810000] ...").
var printkTimeRE = regexp.MustCompile(`\[\s*(\d+)\.(\d{6})\]`)

// args is the QEMU command line for argv on n vCPUs; extra comes first
// (accelerator, icount).
func (q qemuRunner) args(n int, argv []string, extra ...string) []string {
	a := append([]string{}, extra...)
	return append(a, "-smp", fmt.Sprint(n), "-m", qemuMem,
		// -nographic: serial console on stdio, as samsara's console;
		// -no-reboot: init's reset ends QEMU; -net none: no NIC, so no
		// iPXE option ROM in the boot.
		"-nographic", "-no-reboot", "-net", "none",
		"-kernel", q.kernel, "-initrd", q.initrd,
		"-append", q.cmdline+" -- "+strings.Join(argv, " "))
}

// workload measures one program under TCG: plain on 1 and 2 vCPUs,
// recorded and replayed on 1 vCPU, and the -smp 2 recording QEMU refuses.
// With threads, the program runs as "w N tiny"; without, as "w" alone
// (the boot-only runs).
func (q qemuRunner) workload(w string, threads bool) qemuResult {
	argv := func(n int) []string {
		if !threads {
			return []string{w}
		}
		return []string{w, fmt.Sprint(n), workloadSize}
	}
	tcg := []string{"-accel", "tcg"}
	var r qemuResult
	r.Plain1, _ = q.guestRun(q.args(1, argv(1), tcg...))
	r.Plain2, _ = q.guestRun(q.args(2, argv(2), tcg...))

	rr := filepath.Join(q.dir, w+".qemu-rr")
	// shift=auto: icount adapts the virtual clock to host speed, the
	// setting PLATFORM.md's measurements used.
	icount := func(mode, file string) []string {
		return append(append([]string{}, tcg...), "-icount", "shift=auto,rr="+mode+",rrfile="+file)
	}
	var recOut, repOut string
	r.Record1, recOut = q.guestRun(q.args(1, argv(1), icount("record", rr)...))
	if st, err := os.Stat(rr); err == nil {
		r.LogBytes = st.Size()
	}
	if m := printkTimeRE.FindAllStringSubmatch(recOut, -1); len(m) > 0 {
		last := m[len(m)-1]
		sec, _ := strconv.ParseUint(last[1], 10, 64)
		usec, _ := strconv.ParseUint(last[2], 10, 64)
		r.GuestNanos = sec*1e9 + usec*1e3
	}
	if r.Record1.ok() {
		r.Replay1, repOut = q.guestRun(q.args(1, argv(1), icount("replay", rr)...))
		if r.Replay1.ok() && programOutput(recOut, w) != programOutput(repOut, w) {
			r.Replay1.Err = fmt.Sprintf("replay printed %q, record %q", programOutput(repOut, w), programOutput(recOut, w))
		}
	}
	// QEMU 7.2 refuses record/replay with more than one vCPU; run it
	// anyway so the table shows the refusal from this run.
	rr2 := filepath.Join(q.dir, w+"-smp2.qemu-rr")
	var out2 string
	r.Record2, out2 = q.guestRun(q.args(2, argv(2), icount("record", rr2)...))
	if r.Record2.ok() {
		r.Record2.Err = "" // it worked: a newer QEMU
	} else if l := lineWith(out2, "not supported"); l != "" {
		r.Record2.Err = refusedPrefix + strings.TrimPrefix(l, qemuBin+": ")
	}
	return r
}

// refusedPrefix marks an outcome whose failure is QEMU declining the
// configuration (rendered as such by refusalCell).
const refusedPrefix = "refused: "

// guestRun runs QEMU to completion and checks that init reported exit
// status 0.
func (q qemuRunner) guestRun(args []string) (outcome, string) {
	o, out := runCmd(q.timeout, qemuBin, args...)
	if !o.ok() {
		return o, out
	}
	m := exitStatusRE.FindAllStringSubmatch(out, -1)
	switch {
	case len(m) == 0:
		o.Err = "no \"init: exit status\" line; last: " + lastLine(out)
	case m[len(m)-1][1] != "0":
		o.Err = "guest program exit status " + m[len(m)-1][1]
	}
	return o, out
}

// programOutput is the workload's summary line ("w: ... ok").
func programOutput(out, w string) string {
	return lineWith(out, w+": ")
}

// lineWith is the first line of out containing s, trimmed.
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// kvmFailure is QEMU's line when KVM_RUN reports an emulation failure.
const kvmFailure = "KVM internal error"

// kvm tries the workload under qemu -enable-kvm on n vCPUs. Under PVM the
// guest kernel stops on an instruction KVM's emulator rejects (PLATFORM.md:
// fwait in fpu__drop, at the first exec) and QEMU pauses the VM instead of
// exiting: the run is stopped at that point and the failure reported with
// the time it took to get there.
func (q qemuRunner) kvm(w string, n int) kvmResult {
	argv := []string{w, fmt.Sprint(n), workloadSize}
	// qemu64,+xsaveerptr: -cpu host fails on MSR 0x10a under PVM, and
	// without XSAVEERPTR Linux patches in x87 code the emulator rejects
	// (see main.go).
	args := q.args(n, argv, "-enable-kvm", "-cpu", "qemu64,+xsaveerptr")
	res := kvmResult{VCPUs: n, Workload: strings.Join(argv, " ")}

	cmd := exec.Command(qemuBin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.Outcome = outcome{Ran: true, Err: err.Error()}
		return res
	}
	type line struct {
		s  string
		at time.Duration
	}
	lines := make(chan line)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- line{sc.Text(), time.Since(start)}
		}
		close(lines)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()

	var out []string
	var failedAt time.Duration
	deadline := time.After(q.timeout)
	// dumpGrace bounds the wait for the register dump QEMU prints after
	// the error line (it ends with "Code=").
	const dumpGrace = 5 * time.Second
	var grace <-chan time.Time
loop:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			out = append(out, l.s)
			if failedAt == 0 && strings.Contains(l.s, kvmFailure) {
				failedAt = l.at
				grace = time.After(dumpGrace)
			}
			if failedAt != 0 && strings.HasPrefix(l.s, "Code=") {
				break loop
			}
		case <-grace:
			break loop
		case <-deadline:
			break loop
		}
	}
	cmd.Process.Kill()
	// Drain until Wait returns so the reader goroutine ends.
	go func() {
		for range lines {
		}
	}()
	werr := <-exited
	all := strings.Join(out, "\n")

	res.Outcome = outcome{Wall: time.Since(start), Ran: true}
	switch {
	case failedAt != 0:
		res.Outcome.Wall = failedAt
		res.Outcome.Err = describeKVMFailure(all, w)
	case exitStatusRE.MatchString(all):
		if m := exitStatusRE.FindAllStringSubmatch(all, -1); m[len(m)-1][1] != "0" {
			res.Outcome.Err = "guest program exit status " + m[len(m)-1][1]
		}
	case werr != nil:
		res.Outcome.Err = fmt.Sprintf("%v: %s", werr, lastLine(all))
	default:
		res.Outcome.Err = fmt.Sprintf("no result after %v", q.timeout)
	}
	return res
}

// codeRE is the instruction bytes QEMU dumps, the failing one in <>.
var codeRE = regexp.MustCompile(`<([0-9a-f]{2})>((?: [0-9a-f]{2}){0,3})`)

// describeKVMFailure summarises QEMU's emulation-failure dump.
func describeKVMFailure(out, w string) string {
	what := "KVM internal error (emulation failure)"
	if m := codeRE.FindStringSubmatch(out); m != nil {
		what += " at bytes " + m[1] + m[2]
		if m[1] == "9b" {
			what += " (fwait)"
		}
	}
	if l := lineWith(out, "CPL="); l != "" {
		if i := strings.Index(l, "CPL="); i >= 0 && len(l) >= i+5 {
			what += ", guest CPL" + l[i+4:i+5]
		}
	}
	if programOutput(out, w) == "" {
		what += "; the workload never ran, QEMU paused the VM"
	}
	return what
}
