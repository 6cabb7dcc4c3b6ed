package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// healthTimeout bounds the health check, shorter than a probe's usual
// timeoutSeconds so that a hung daemon fails the probe with a message.
const healthTimeout = 3 * time.Second

func newHealthCmd(g *globals) *cobra.Command {
	var live bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that the daemon is ready for traffic (or, with --live, alive)",
		Long: `Check the daemon's /readyz: exit 0 and print "ready" when it is ready for
traffic (it is not shutting down, and every function whose readiness is
required has its min_instances running), else exit 1 with the reason: the
functions that hold it back, and why. With --live, check /livez instead: the
daemon serves its API, draining included. Either fails when the daemon does
not answer within 3s.

These are the Kubernetes manifests' probes ("health" for readiness, "health
--live" for liveness and startup): an exec probe inside the agent's pod
reaches the API on the pod's loopback, so the API never has to listen where
the network can reach it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
			defer cancel()
			if live {
				if err := g.client().Live(ctx); err != nil {
					return fmt.Errorf("not live: %w", err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "live")
				return nil
			}
			if err := g.client().Ready(ctx); err != nil {
				return fmt.Errorf("not ready: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			return nil
		},
	}
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/livez) instead of readiness")
	return cmd
}
