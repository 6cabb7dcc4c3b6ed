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
	return &cobra.Command{
		Use:   "health",
		Short: "Check that the daemon is up and taking invocations",
		Long: `Check the daemon's /healthz: exit 0 and print "ok" when it is up and taking
invocations, else exit 1 with the reason (it is shutting down, or does not
answer within 3s).

This is the Kubernetes manifests' liveness and readiness probe: an exec
probe inside the agent's pod reaches the API through its unix socket, found
in the state directory, so the API never has to listen where the network
can reach it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
			defer cancel()
			if err := g.client().Health(ctx); err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
}
