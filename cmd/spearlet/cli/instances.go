package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newInstancesCmd(g *globals) *cobra.Command {
	var function string
	list := func(cmd *cobra.Command, _ []string) error {
		insts, err := g.client().Instances(cmd.Context(), function)
		if err != nil {
			return err
		}
		fns, err := g.client().Functions(cmd.Context())
		if err != nil {
			return err
		}
		return g.print(cmd.OutOrStdout(), insts, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "ID\tFUNCTION\tSTATUS\tHEALTH\tPID\tCHANNEL\tCONNS\tIN-FLIGHT\tREQUESTS\tAGE\tREASON")
			for _, in := range insts {
				pid := "-"
				if in.PID != 0 {
					pid = fmt.Sprint(in.PID)
				}
				reason := in.Reason
				if in.HealthReason != "" {
					reason = in.HealthReason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", in.ID, in.Function, in.Status, orDash(in.Health), pid,
					in.Channel, in.Connections, in.InFlight, in.Stats.Latency.Count, ago(in.Created), orDash(reason))
			}
			// A function in crash-loop back-off has no instance to show
			// it: say so after the table.
			for _, f := range fns {
				if f.State == "crash-loop" && (function == "" || function == f.Name) {
					fmt.Fprintf(tw, "\nfunction %s: crash-loop: %d starts failed in a row; next retry %s; last error: %s\n",
						f.Name, f.Failures, until(f.NextRetry), f.LastError)
				}
			}
		})
	}
	cmd := &cobra.Command{
		Use:     "instances",
		Aliases: []string{"instance", "inst"},
		Short:   "List, create and delete instances (default: list)",
		Args:    cobra.NoArgs,
		RunE:    list,
	}
	cmd.Flags().StringVar(&function, "function", "", "only this function's instances")
	listCmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List live and recently stopped instances", Args: cobra.NoArgs, RunE: list}
	listCmd.Flags().StringVar(&function, "function", "", "only this function's instances")

	create := &cobra.Command{
		Use:   "create FUNCTION",
		Short: "Start one more instance of a function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := g.client().CreateInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), in, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, in.ID) })
		},
	}
	del := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Stop an instance",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().DeleteInstance(cmd.Context(), args[0])
		},
	}
	var lines int
	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an instance's latest output lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := g.client().Logs(cmd.Context(), args[0], lines)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
				for _, l := range out {
					fmt.Fprintln(cmd.OutOrStdout(), l)
				}
			})
		},
	}
	logs.Flags().IntVarP(&lines, "lines", "n", 100, "how many of the latest lines")
	cmd.AddCommand(listCmd, create, del, logs)
	return cmd
}
