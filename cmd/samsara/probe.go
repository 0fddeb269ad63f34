package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/ept"
	"github.com/samsara-vmm/samsara/internal/vmm"
)

// probeReport is vmm's host report plus the page trackers (internal/ept)
// this host supports.
type probeReport struct {
	*vmm.HostReport
	Trackers       []ept.BackendInfo `json:"page_trackers"`
	DefaultTracker string            `json:"default_page_tracker"`
	// DefaultRecorder is `record`'s default --mode, with why.
	DefaultRecorder string `json:"default_recorder"`
}

// probePaths are the files probe measures (tests point them elsewhere).
var probePaths = vmm.DefaultProbePaths()

// noKVMReason is what probe says of what it did not measure because the
// KVM device is unusable.
const noKVMReason = "no usable /dev/kvm"

func newProbeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Report what this host supports and what samsara will use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := vmm.ProbeHostAt(probePaths)
			return reportProbe(cmd.OutOrStdout(), newProbeReport(r, ept.Backends, ept.DefaultName), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// newProbeReport adds the page trackers to r. They are checked only when
// the KVM device works: otherwise every tracker is reported unsupported
// (not checked) and there is no default.
func newProbeReport(r *vmm.HostReport, backends func() []ept.BackendInfo, defaultName func() string) probeReport {
	p := probeReport{HostReport: r}
	if !r.KVMAvailable {
		for _, b := range backends() {
			p.Trackers = append(p.Trackers, ept.BackendInfo{Name: b.Name, Exact: b.Exact, Reason: "not checked: " + noKVMReason})
		}
		p.DefaultRecorder = "none can run here (" + noKVMReason + ")"
		return p
	}
	p.Trackers = backends()
	p.DefaultTracker = defaultName()
	p.DefaultRecorder = defaultRecorderWhy
	if p.DefaultTracker == "" {
		p.DefaultRecorder = "serialized (--mode parallel cannot run here: no exact page tracker)"
	}
	return p
}

// reportProbe prints p (as JSON if asJSON) and returns an error, which
// makes samsara exit non-zero, if this host cannot run samsara.
func reportProbe(w io.Writer, p probeReport, asJSON bool) error {
	r := p.HostReport
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return err
		}
	} else {
		printProbe(w, r)
		printTrackers(w, p)
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("this host cannot run samsara:\n  %s", strings.Join(r.Problems, "\n  "))
	}
	return nil
}

func printProbe(w io.Writer, r *vmm.HostReport) {
	if !r.KVMAvailable {
		// First, what is wrong and what to do.
		fmt.Fprintf(w, "%s: %s\n", noKVMReason, r.KVMError)
		for _, l := range strings.Split(r.KVMAdvice, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
		fmt.Fprintf(w, "KVM API version:  not read (%s)\n", noKVMReason)
	} else {
		fmt.Fprintf(w, "KVM API version:  %d\n", r.APIVersion)
	}
	desc := map[string]string{
		"pvm": "PVM (kvm_pvm: guest kernel code is emulated, user code native)",
		"vmx": "Intel VMX (hardware virtualization)",
		"svm": "AMD SVM (hardware virtualization)",
	}[r.Platform]
	if desc == "" {
		desc = r.Platform + " (" + r.PlatformSeen + ")"
	}
	fmt.Fprintf(w, "platform:         %s\n", desc)
	if !r.KVMAvailable {
		fmt.Fprintf(w, "capabilities:     not checked (%s)\n", noKVMReason)
	} else {
		fmt.Fprintln(w, "capabilities:")
	}
	for _, c := range r.Capabilities {
		state := "yes"
		if c.Value <= 0 {
			state = "no"
		}
		req := ""
		if c.Required {
			req = " (required)"
		}
		fmt.Fprintf(w, "  %-36s %-4s %s%s\n", c.Name, state, c.Why, req)
	}
	fmt.Fprintln(w, "performance counters:")
	names := make([]string, 0, len(r.Counters))
	for n := range r.Counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-40s %s\n", n, r.Counters[n])
	}
	switch {
	case !r.KVMAvailable:
		fmt.Fprintf(w, "insn_emulation statistic: not checked (%s)\n", noKVMReason)
	case r.InsnEmulation:
		fmt.Fprintln(w, "insn_emulation statistic: yes")
	default:
		fmt.Fprintln(w, "insn_emulation statistic: no")
	}
	fmt.Fprintf(w, "progress backend: %s\n", r.BackendNote)
}

func printTrackers(w io.Writer, p probeReport) {
	fmt.Fprintln(w, "page trackers (parallel recorder):")
	for _, b := range p.Trackers {
		state := "yes"
		if !b.Supported {
			state = "no"
		}
		fmt.Fprintf(w, "  %-28s %-4s %s\n", b.Name, state, b.Reason)
	}
	def := p.DefaultTracker
	switch {
	case def != "":
	case !p.KVMAvailable:
		def = "none (" + noKVMReason + ")"
	default:
		def = "none (the parallel recorder cannot run; the serialized one can)"
	}
	fmt.Fprintf(w, "default page tracker: %s\n", def)
	fmt.Fprintf(w, "default recorder: %s\n", p.DefaultRecorder)
}

// defaultRecorderWhy is what probe says of `record`'s default --mode.
// The parallel recorder runs here (every end-to-end test passes with it)
// but records 1.1x-2.3x slower than the serialized one in the benchmark
// report (README, "Benchmarks"): without a PMU a chunk of guest user code
// has no budget, so a conflict found at its end costs all of it, and
// kernel code, where chunks are bounded, is emulated under PVM.
const defaultRecorderWhy = "serialized (--mode parallel works here but is slower on these hosts: see README, \"The parallel recorder\")"
