package ept

import (
	"fmt"
	"testing"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"

	"github.com/samsara-vmm/samsara/internal/kvmtest"
)

// benchSize is the guest memory of the benchmarks: 64 MiB, so that costs
// proportional to the view size (pread of pagemap, whole-view
// MADV_DONTNEED) show.
const benchSize = 64 << 20

// touchLoop at kvmtest.CodeAddr, CPL3: RCX pages from RSI on, one page
// apart; reads each, writes every fourth (when the low two bits of RCX
// are zero), then exits:
//
//	L: mov rax,[rsi]; test cl,3; jnz S; mov [rsi],rax
//	S: add rsi,4096; dec rcx; jnz L; out 0x80,al
var touchLoop = []byte{0x48, 0x8b, 0x06, 0xf6, 0xc1, 0x03, 0x75, 0x03, 0x48, 0x89, 0x06,
	0x48, 0x81, 0xc6, 0x00, 0x10, 0x00, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xe9, 0xe6, 0x80}

// touchBase is the first page the loop touches (1 MiB: clear of code and
// page tables).
const touchBase = 0x100000

// benchTrackers are the backends and the measured variants of the
// private-view backend.
func benchTrackers() []Tracker {
	return []Tracker{
		&privateTracker{name: PrivatePagemap, uffdWP: true},
		&privateTracker{name: PrivatePagemap + "+pread", uffdWP: true, usePread: true},
		&privateTracker{name: PrivatePagemap + "+dropall", uffdWP: true, dropAll: true},
		&privateTracker{name: PrivatePagemapFaultAround},
		&dirtyLogTracker{privateTracker{name: DirtyLog, uffdWP: true}},
	}
}

// BenchmarkChunk measures one chunk that touches N pages (N/4 written) at
// CPL3: the guest run (dominated by the first-touch faults), End, and
// Commit of the written pages or Discard. Reported per chunk in µs.
func BenchmarkChunk(b *testing.B) {
	kvmtest.RequireKVM(b)
	for _, tr := range benchTrackers() {
		for _, n := range []uint64{10, 100, 1000} {
			for _, op := range []string{"commit", "discard"} {
				b.Run(fmt.Sprintf("%s/pages=%d/%s", tr.Name(), n, op), func(b *testing.B) {
					benchChunk(b, tr, n, op == "commit")
				})
			}
		}
	}
}

func benchChunk(b *testing.B, tr Tracker, n uint64, commit bool) {
	memfd, canon := newMemfd(b, benchSize)
	fillCanonical(canon, touchLoop)
	m := newMachine(b, tr, memfd, benchSize, true)
	var run, end, fin time.Duration
	var reads, writes int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.view.Begin(); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		m.runTo(b, &kvm.Regs{RIP: kvmtest.CodeAddr, RFLAGS: rflags, RSP: kvmtest.StackTop, RSI: touchBase, RCX: n})
		t1 := time.Now()
		s, err := m.view.End()
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if commit {
			err = m.view.Commit(nil)
		} else {
			err = m.view.Discard()
		}
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		run, end, fin = run+t1.Sub(t0), end+t2.Sub(t1), fin+t3.Sub(t2)
		reads, writes = len(s.Read), len(s.Write)
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(us(run), "run-µs")
	b.ReportMetric(us(run)/float64(n), "run-µs/page")
	b.ReportMetric(us(end), "end-µs")
	b.ReportMetric(us(fin), "commit|discard-µs")
	b.ReportMetric(float64(reads), "read-pages")
	b.ReportMetric(float64(writes), "write-pages")
}
