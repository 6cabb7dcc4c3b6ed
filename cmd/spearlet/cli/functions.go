package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent/api"
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
				fmt.Fprintln(tw, "NAME\tRUNTIME\tHEALTH\tREADY\tDESIRED\tMIN\tMAX\tIN-FLIGHT\tQUEUED\tCONCURRENCY\tBALANCER\tRESTARTS\tNEXT RETRY\tREASON\tLAST ERROR")
				for _, f := range fns {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", f.Name, f.Runtime, f.Health, f.Ready, f.Instances,
						desired(f), f.MinInstances, f.MaxInstances, f.InFlight, f.Queued, f.MaxConcurrency, orDash(f.Balancer), f.Restarts,
						until(f.NextRetry), orDash(oneLine(f.HealthReason)), lastError(f.LastError, f.LastErrorAt))
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

// desired is the autoscaler's figure for tables: "-" without a target,
// marked while it scales on its panic window.
func desired(f api.Function) string {
	switch {
	case f.Desired == 0:
		return "-"
	case f.Panicking:
		return fmt.Sprintf("%d (panic)", f.Desired)
	}
	return fmt.Sprint(f.Desired)
}

// lastError is a function's last error for tables, on one line, with
// its age.
func lastError(msg string, at time.Time) string {
	if msg == "" {
		return "-"
	}
	msg, _, _ = strings.Cut(msg, "\n")
	if !at.IsZero() {
		msg += " (" + ago(at) + " ago)"
	}
	return orDash(msg)
}

// functionSummary is a function's health on one line: its state, why,
// and, unless it is serving, its next retry and last error.
func functionSummary(f api.Function) string {
	s := "function " + f.Name + ": " + f.Health
	if f.HealthReason != "" {
		s += ": " + f.HealthReason
	}
	if f.Health == "serving" {
		return s
	}
	if !f.NextRetry.IsZero() {
		s += "; next retry " + until(f.NextRetry)
	}
	if f.LastError != "" {
		s += "; last error: " + lastError(f.LastError, f.LastErrorAt)
	}
	return s
}
