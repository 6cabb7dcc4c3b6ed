package cli

import (
	"fmt"
	"io"

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
				fmt.Fprintln(tw, "NAME\tRUNTIME\tINSTANCES\tIN-FLIGHT\tMIN\tMAX\tCONCURRENCY")
				for _, f := range fns {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", f.Name, f.Runtime, f.Instances, f.InFlight,
						f.MinInstances, f.MaxInstances, f.MaxConcurrency)
				}
			})
		})
	}
	d = clientCommand(cmd)
	return cmd
}
