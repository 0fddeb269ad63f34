package main

import (
	"fmt"
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

func newProbeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Report what this host supports and what samsara will use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := vmm.ProbeHost()
			p := probeReport{HostReport: r, Trackers: ept.Backends(), DefaultTracker: ept.DefaultName(), DefaultRecorder: defaultRecorderWhy}
			if asJSON {
				if err := printJSON(p); err != nil {
					return err
				}
			} else {
				printProbe(r)
				printTrackers(p)
			}
			if len(r.Problems) > 0 {
				return fmt.Errorf("this host cannot run samsara:\n  %s", strings.Join(r.Problems, "\n  "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printProbe(r *vmm.HostReport) {
	fmt.Printf("KVM API version:  %d\n", r.APIVersion)
	desc := map[string]string{
		"pvm": "PVM (kvm_pvm: guest kernel code is emulated, user code native)",
		"vmx": "Intel VMX (hardware virtualization)",
		"svm": "AMD SVM (hardware virtualization)",
	}[r.Platform]
	if desc == "" {
		desc = r.Platform
	}
	fmt.Printf("platform:         %s\n", desc)
	fmt.Println("capabilities:")
	for _, c := range r.Capabilities {
		state := "yes"
		if c.Value <= 0 {
			state = "no"
		}
		req := ""
		if c.Required {
			req = " (required)"
		}
		fmt.Printf("  %-36s %-4s %s%s\n", c.Name, state, c.Why, req)
	}
	fmt.Println("performance counters:")
	names := make([]string, 0, len(r.Counters))
	for n := range r.Counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("  %-40s %s\n", n, r.Counters[n])
	}
	yes := "no"
	if r.InsnEmulation {
		yes = "yes"
	}
	fmt.Printf("insn_emulation statistic: %s\n", yes)
}

func printTrackers(p probeReport) {
	fmt.Println("page trackers (parallel recorder):")
	for _, b := range p.Trackers {
		state := "yes"
		if !b.Supported {
			state = "no"
		}
		fmt.Printf("  %-28s %-4s %s\n", b.Name, state, b.Reason)
	}
	def := p.DefaultTracker
	if def == "" {
		def = "none (the parallel recorder cannot run; the serialized one can)"
	}
	fmt.Printf("default page tracker: %s\n", def)
	fmt.Printf("default recorder: %s\n", p.DefaultRecorder)
}

// defaultRecorderWhy is what probe says of `record`'s default --mode.
// The parallel recorder runs here (every end-to-end test passes with it)
// but records 1.1x-2.3x slower than the serialized one in the benchmark
// report (README, "Benchmarks"): without a PMU a chunk of guest user code
// has no budget, so a conflict found at its end costs all of it, and
// kernel code, where chunks are bounded, is emulated under PVM.
const defaultRecorderWhy = "serialized (--mode parallel works here but is slower on these hosts: see README, \"The parallel recorder\")"
