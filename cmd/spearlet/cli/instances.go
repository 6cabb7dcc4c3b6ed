package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent/api"
)

func newInstancesCmd() *cobra.Command {
	var d *daemonFlags
	cmd := &cobra.Command{
		Use:     "instances",
		Aliases: []string{"instance", "inst"},
		Short:   "List, create and delete instances (default: list)",
		Args:    cobra.NoArgs,
	}
	listCmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List live and recently stopped instances", Args: cobra.NoArgs}
	for _, c := range []*cobra.Command{cmd, listCmd} {
		var function string
		c.Flags().StringVar(&function, "function", "", "only this function's instances")
		out := addOutput(c)
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			insts, err := d.client().Instances(cmd.Context(), function)
			if err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), insts, func(w io.Writer) error {
				if err := instanceTable(w, insts); err != nil {
					return err
				}
				// A function in crash-loop back-off has no instance to show
				// it: say so after the table.
				fns, err := d.client().Functions(cmd.Context())
				if err != nil {
					return err
				}
				for _, f := range fns {
					if f.State == "crash-loop" && (function == "" || function == f.Name) {
						fmt.Fprintf(w, "\nfunction %s: crash-loop: %d starts failed in a row; next retry %s; last error: %s\n",
							f.Name, f.Failures, until(f.NextRetry), f.LastError)
					}
				}
				return nil
			})
		}
	}

	create := &cobra.Command{
		Use:   "create FUNCTION",
		Short: "Start one more instance of a function",
		Args:  cobra.ExactArgs(1),
	}
	createOut := addOutput(create, "id", "table", "json", "yaml")
	create.RunE = func(cmd *cobra.Command, args []string) error {
		in, err := d.client().CreateInstance(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if createOut.format == "table" {
			return instanceTable(cmd.OutOrStdout(), []api.Instance{in})
		}
		return createOut.print(cmd.OutOrStdout(), in, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, in.ID)
			return err
		})
	}

	del := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Stop an instance",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return d.client().DeleteInstance(cmd.Context(), args[0])
		},
	}

	var lines int
	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an instance's latest output lines",
		Args:  cobra.ExactArgs(1),
	}
	logsOut := addOutput(logs, "text", "json", "yaml")
	logs.RunE = func(cmd *cobra.Command, args []string) error {
		lines, err := d.client().Logs(cmd.Context(), args[0], lines)
		if err != nil {
			return err
		}
		return logsOut.print(cmd.OutOrStdout(), api.Logs{ID: args[0], Lines: lines}, func(w io.Writer) error {
			for _, l := range lines {
				if _, err := fmt.Fprintln(w, l); err != nil {
					return err
				}
			}
			return nil
		})
	}
	logs.Flags().IntVarP(&lines, "lines", "n", 100, "how many of the latest lines")

	cmd.AddCommand(listCmd, create, del, logs)
	d = clientCommand(cmd)
	create.ValidArgsFunction = d.functionNames
	del.ValidArgsFunction = d.instanceIDs(false)
	logs.ValidArgsFunction = d.instanceIDs(true)
	for _, c := range []*cobra.Command{cmd, listCmd} {
		_ = c.RegisterFlagCompletionFunc("function", d.functionFlag)
	}
	return cmd
}

// instanceTable writes instances as a table.
func instanceTable(w io.Writer, insts []api.Instance) error {
	return printTable(w, func(tw io.Writer) {
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
	})
}
