package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newFunctionsCmd() *cobra.Command {
	var d *daemonFlags
	cmd := &cobra.Command{
		Use:     "functions",
		Aliases: []string{"function", "fn"},
		Short:   "List the configured functions",
		Args:    cobra.NoArgs,
	}
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fns, err := d.client().Functions(cmd.Context())
		if err != nil {
			return err
		}
		return out.print(cmd.OutOrStdout(), fns, func(w io.Writer) error {
			return printTable(w, func(tw io.Writer) {
				fmt.Fprintln(tw, "NAME\tRUNTIME\tSTATE\tINSTANCES\tREADY\tIN-FLIGHT\tQUEUED\tMIN\tMAX\tCONCURRENCY\tBALANCER\tNEXT RETRY\tLAST ERROR")
				for _, f := range fns {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", f.Name, f.Runtime, f.State, f.Instances, f.Ready,
						f.InFlight, f.Queued, f.MinInstances, f.MaxInstances, f.MaxConcurrency, orDash(f.Balancer), until(f.NextRetry), orDash(f.LastError))
				}
			})
		})
	}
	d = clientCommand(cmd)
	return cmd
}

// until says how long until t ("in 3s"), or "-" for none.
func until(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "in " + max(time.Until(t), 0).Round(time.Millisecond).String()
}
