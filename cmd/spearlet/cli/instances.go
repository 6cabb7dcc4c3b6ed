package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent/api"
)

func newInstancesCmd(g *globals) *cobra.Command {
	var function string
	list := func(cmd *cobra.Command, _ []string) error {
		c := g.client()
		insts, err := c.Instances(cmd.Context(), function)
		if err != nil {
			return err
		}
		// Each function's health follows its instances in the table: a
		// crash-looping function has no instance to show it.
		var fns []api.Function
		if g.output != "json" {
			all, err := c.Functions(cmd.Context())
			if err != nil {
				return err
			}
			for _, f := range all {
				if function == "" || function == f.Name {
					fns = append(fns, f)
				}
			}
		}
		return g.print(cmd.OutOrStdout(), insts, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "ID\tFUNCTION\tSTATUS\tHEALTH\tPID/POD\tCHANNEL\tCONNS\tIN-FLIGHT\tREQUESTS\tP50\tP99\tRESTARTS\tAGE\tREASON\tLAST ERROR")
			for _, in := range insts {
				where := "-"
				switch {
				case in.PID != 0:
					where = fmt.Sprint(in.PID)
				case in.Pod != "":
					where = in.Pod
				}
				reason := in.Reason
				if in.HealthReason != "" {
					reason = in.HealthReason
				}
				lat := in.Stats.Latency
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", in.ID, in.Function, in.Status, orDash(in.Health),
					where, in.Channel, in.Connections, in.InFlight, lat.Count, latency(lat.Count, lat.P50), latency(lat.Count, lat.P99),
					in.Restarts, ago(in.Created), orDash(oneLine(reason)), orDash(oneLine(in.LastError)))
			}
			if len(fns) > 0 {
				fmt.Fprintln(tw)
			}
			for _, f := range fns {
				fmt.Fprintln(tw, functionSummary(f))
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
	var follow bool
	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an instance's latest output lines, or follow them (-f)",
		Long: `Print an instance's latest output lines. With -f, keep printing each new
line as the instance writes it, until the instance stops (exit 0) or the
command is interrupted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow {
				w := cmd.OutOrStdout()
				err := g.client().FollowLogs(cmd.Context(), args[0], lines, func(line string) error {
					_, err := fmt.Fprintln(w, line)
					return err
				})
				if errors.Is(err, context.Canceled) {
					return nil // interrupted
				}
				return err
			}
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
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the instance stops")
	cmd.AddCommand(listCmd, create, del, logs)
	return cmd
}

// latency formats a latency percentile for tables: "-" before any request.
func latency(count uint64, d time.Duration) string {
	if count == 0 {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// oneLine keeps a message to one line of a table.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	const max = 60
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}
