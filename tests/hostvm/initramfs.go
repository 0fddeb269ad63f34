package main

// The host VM's initramfs: busybox, the KVM modules, an init that loads
// them and runs one shell script, and whatever the caller adds (samsara,
// the reference guest from build/, test binaries). It is a plain newc cpio
// made by the cpio tool (in guest-images/deps.txt) from a staging folder;
// nothing in it comes from the network.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// busyboxPath is where Debian's busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// Markers the host's init prints on the console; the runner reads them.
const (
	markReady = "SAMSARA-HOSTVM-KVM-READY"
	markExit  = "SAMSARA-HOSTVM-EXIT="
	markError = "SAMSARA-HOSTVM-ERROR"
)

// hostInit is the host's /init. It mounts what samsara and its tests need
// (/proc for cpuinfo, /sys for the KVM module's state, devtmpfs for
// /dev/kvm, a tmpfs /tmp for recordings and checkpoints), loads KVM, waits
// a bounded 10 s for /dev/kvm, runs /hostvm/run.sh and prints its status.
// reboot -f with QEMU's -no-reboot ends QEMU.
const hostInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /usr/bin && ln -s /bin/env /usr/bin/env
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=90% tmpfs /tmp
# Loopback up: the gdb server and its client talk over 127.0.0.1.
ip link set lo up || echo "` + markError + ` ip link set lo up failed"
mkdir -p /dev/shm /dev/pts
for m in irqbypass kvm kvm-amd; do
	insmod /lib/modules/$m.ko || echo "` + markError + ` insmod $m.ko failed"
done
i=0
while [ ! -e /dev/kvm ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ -e /dev/kvm ]; then
	echo ` + markReady + `
	. /hostvm/env
	cd /hostvm
	sh /hostvm/run.sh
	echo "` + markExit + `$?"
else
	echo "` + markError + ` no /dev/kvm 10 s after loading kvm-amd:"
	dmesg | grep -i -e kvm -e svm | tail -20
fi
sync
reboot -f
`

// payload is what goes into the initramfs besides busybox and init.
type payload struct {
	// Files maps a path inside the host (relative to /) to a file or
	// folder on this machine.
	Files map[string]string
	// Env is exported before run.sh starts.
	Env map[string]string
	// Script is run.sh: the command the host runs.
	Script string
}

// buildInitramfs writes the host's initramfs to out.
func buildInitramfs(out string, k hostKernel, p payload) error {
	stage, err := os.MkdirTemp(filepath.Dir(out), "initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "lib/modules", "hostvm"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busyboxPath, filepath.Join(stage, "bin", "busybox")); err != nil {
		return fmt.Errorf("busybox (package busybox-static): %w", err)
	}
	for _, m := range hostModules {
		if err := copyFile(filepath.Join(k.Dir, m), filepath.Join(stage, "lib/modules", m)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(stage, "init"), []byte(hostInit), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "hostvm", "run.sh"), []byte(p.Script), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "hostvm", "env"), []byte(envScript(p.Env)), 0o644); err != nil {
		return err
	}
	for dst, src := range p.Files {
		if err := copyTree(src, filepath.Join(stage, dst)); err != nil {
			return fmt.Errorf("add %s to the host: %w", src, err)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("sh", "-c", "find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet")
	cmd.Dir = stage
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio: %w: %s", err, stderr.String())
	}
	return f.Close()
}

// envScript renders env as shell exports, in a stable order.
func envScript(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// copyTree copies a file, or a folder recursively, to dst.
func copyTree(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return copyFile(src, dst)
	}
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(t, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, t)
	})
}
