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
	var d *daemonFlags
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that the daemon is up and taking invocations",
		Long: `Check the daemon's /healthz: exit 0 and print "ok" when it is up and taking
invocations, else exit non-zero with the reason (it is shutting down, or does
not answer within 3s; 3 when nothing listens).

This is the Kubernetes manifests' liveness and readiness probe: an exec
probe inside the agent's pod reaches the API on the pod's loopback, so the
API never has to listen where the network can reach it.`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd, "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
		defer cancel()
		if err := d.client().Health(ctx); err != nil {
			return fmt.Errorf("unhealthy: %w", err)
		}
		return out.print(cmd.OutOrStdout(), api.Health{Status: "ok"}, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, "ok")
			return err
		})
	}
	d = clientCommand(cmd)
	return cmd
}
