// Package cli is the spearlet command line: the daemon (serve), the hidden
// worker that the default config runs as an instance, and the client
// commands, which reach the daemon through package client.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/internal/statedir"
)

// Run runs the command line args. ctx ends on SIGINT or SIGTERM; stopSignals
// restores the default signal handling (serve calls it once a shutdown has
// begun, so that a second signal kills the process).
func Run(ctx context.Context, args []string, stopSignals func()) error {
	root := newRoot(stopSignals)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// globals are the flags every client command shares.
type globals struct {
	addr     string
	stateDir string
	output   string
}

func newRoot(stopSignals func()) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "spearlet",
		Short:         "Spear node agent: run functions in runtime instances and invoke them",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", "",
		"daemon API address: host:port, URL or unix:PATH (default $"+client.EnvAddr+", else the socket in the state directory, else "+client.DefaultAddr+")")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "",
		"the daemon's state directory, where its API socket and token are (default $"+client.EnvStateDir+", else "+statedir.Default()+")")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of listings: table or json")
	root.AddCommand(
		newServeCmd(stopSignals),
		newWorkerCmd(),
		newInvokeCmd(g),
		newInstancesCmd(g),
		newFunctionsCmd(g),
		newHealthCmd(g),
		newVersionCmd(),
		newConformanceCmd(g),
		newNewCmd(),
	)
	return root
}

func (g *globals) client() *client.Client {
	c := client.FromEnv(g.addr)
	if g.stateDir != "" {
		c.StateDir = g.stateDir
	}
	return c
}

// print writes v as JSON with -o json, else calls table with a tabwriter.
func (g *globals) print(w io.Writer, v any, table func(tw *tabwriter.Writer)) error {
	switch g.output {
	case "json":
		return printJSON(w, v)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table or json)", g.output)
}

// ago formats how long ago t was, for tables.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "\t", " ")
}

// isTerminal reports whether f is a character device, such as a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
