package cli

import (
	"fmt"
	"text/tabwriter"

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
				fmt.Fprintln(tw, "NAME\tRUNTIME\tHEALTH\tINSTANCES\tIN-FLIGHT\tMIN\tMAX\tCONCURRENCY\tRESTARTS\tREASON")
				for _, f := range fns {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n", f.Name, f.Runtime, f.Health, f.Running, f.Instances,
						f.InFlight, f.MinInstances, f.MaxInstances, f.MaxConcurrency, f.Restarts, orDash(f.HealthReason))
				}
			})
		},
	}
}
