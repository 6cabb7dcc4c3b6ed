package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newReloadCmd() *cobra.Command {
	var (
		d       *daemonFlags
		timeout = 5 * time.Minute
	)
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon read its configuration again and apply it",
		Long: `Reload asks the running daemon to read its configuration again (the file
it was started with, the environment and its flags), as SIGHUP does, and
prints what changed:

  added      the function's instances start
  changed    new instances start, then the old ones drain and stop
  removed    the function takes no new invocations, drains and stops
  unchanged  left alone

A configuration that is not valid, or that changes a setting only a restart
applies (the API and channel listeners, kubernetes, wasm, max_payload), is
refused whole with every problem listed; the daemon keeps serving the old
one. So is one whose new instances fail to start.`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		res, err := d.client().Reload(ctx)
		if err != nil {
			return err
		}
		return out.print(cmd.OutOrStdout(), res, func(w io.Writer) error {
			return printTable(w, func(tw io.Writer) {
				fmt.Fprintln(tw, "FUNCTION\tCHANGE")
				for _, g := range []struct {
					what  string
					names []string
				}{{"added", res.Added}, {"changed", res.Changed}, {"removed", res.Removed}, {"unchanged", res.Unchanged}} {
					for _, name := range g.names {
						fmt.Fprintf(tw, "%s\t%s\n", name, g.what)
					}
				}
			})
		})
	}
	cmd.Flags().Var(durationFlag{&timeout}, "timeout", "how long to wait for the new instances to start and the old ones to drain")
	d = clientCommand(cmd)
	return cmd
}
