package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

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
				// Each function's health follows its instances: a
				// crash-looping function has no instance to show it.
				fns, err := d.client().Functions(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(w)
				for _, f := range fns {
					if function == "" || function == f.Name {
						fmt.Fprintln(w, functionSummary(f))
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
	var follow bool
	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an instance's latest output lines, or follow them (-f)",
		Long: `Print an instance's latest output lines. With -f, keep printing each new
line as the instance writes it, until the instance stops (exit 0) or the
command is interrupted.`,
		Args: cobra.ExactArgs(1),
	}
	logsOut := addOutput(logs, "text", "json", "yaml")
	logs.RunE = func(cmd *cobra.Command, args []string) error {
		if follow {
			if logsOut.format != "text" {
				return usagef(cmd, "--follow prints text only, not -o %s", logsOut.format)
			}
			w := cmd.OutOrStdout()
			err := d.client().FollowLogs(cmd.Context(), args[0], lines, func(line string) error {
				_, err := fmt.Fprintln(w, line)
				return err
			})
			if errors.Is(err, context.Canceled) {
				return nil // interrupted
			}
			return err
		}
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
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the instance stops")
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
	})
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
