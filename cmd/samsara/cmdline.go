package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/samsara-vmm/samsara/internal/vmm"
)

func newCmdlineCmd() *cobra.Command {
	var disk bool
	cmd := &cobra.Command{
		Use:   "cmdline",
		Short: "Print the kernel command line samsara gives the reference guest (for running it elsewhere, e.g. under QEMU)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Println(vmm.GuestCmdline(disk, vmm.ProbePlatform()))
		},
	}
	cmd.Flags().BoolVar(&disk, "with-disk", false, "include the virtio-mmio disk")
	return cmd
}
