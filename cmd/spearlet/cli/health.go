package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent/api"
)

// healthTimeout bounds the health check, shorter than a probe's usual
// timeoutSeconds so that a hung daemon fails the probe with a message.
const healthTimeout = 3 * time.Second

func newHealthCmd() *cobra.Command {
	var (
		d    *daemonFlags
		live bool
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that the daemon is ready for traffic (or, with --live, alive)",
		Long: `Check the daemon's /readyz: exit 0 and print "ready" when it is ready for
traffic (it is not shutting down, and every function whose readiness is
required has its min_instances running), else exit non-zero with the reason:
the functions that hold it back, and why. With --live, check /livez instead:
the daemon serves its API, draining included. Either fails when the daemon
does not answer within 3s (exit 3 when nothing listens).

These are the Kubernetes manifests' probes ("health" for readiness, "health
--live" for liveness and startup): an exec probe inside the agent's pod
reaches the API through its unix socket, found in the state directory, so
the API never has to listen where the network can reach it.`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd, "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
		defer cancel()
		status := "ready"
		if live {
			status = "live"
			if err := d.client().Live(ctx); err != nil {
				return fmt.Errorf("not live: %w", err)
			}
		} else if err := d.client().Ready(ctx); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
		return out.print(cmd.OutOrStdout(), api.Health{Status: status}, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, status)
			return err
		})
	}
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/livez) instead of readiness")
	d = clientCommand(cmd)
	return cmd
}
