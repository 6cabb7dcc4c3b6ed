package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newFunctionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "functions",
		Aliases: []string{"function", "fn"},
		Short:   "List the configured functions",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fns, err := g.client().Functions(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), fns, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tRUNTIME\tSTATE\tINSTANCES\tREADY\tIN-FLIGHT\tQUEUED\tMIN\tMAX\tCONCURRENCY\tBALANCER\tNEXT RETRY\tLAST ERROR")
				for _, f := range fns {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", f.Name, f.Runtime, f.State, f.Instances, f.Ready,
						f.InFlight, f.Queued, f.MinInstances, f.MaxInstances, f.MaxConcurrency, orDash(f.Balancer), until(f.NextRetry), orDash(f.LastError))
				}
			})
		},
	}
}

// until says how long until t ("in 3s"), or "-" for none.
func until(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "in " + max(time.Until(t), 0).Round(time.Millisecond).String()
}
