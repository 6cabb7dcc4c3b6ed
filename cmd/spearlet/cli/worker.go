package cli

import (
	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/echoworker"
	"github.com/spear-go/spear/sdk"
)

// newWorkerCmd is the default "echo" function's instance where the small
// worker binary (cmd/spear-worker) cannot be built: this binary,
// connecting back to the daemon with the SPEAR_* environment.
func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "worker",
		Short:  "Serve as a function instance (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			sdk.Run(echoworker.Handler) // exits the process on error
		},
	}
}
