// Package cli is the spearlet command line: the daemon (serve), the hidden
// worker that the default config runs as an instance, and the client
// commands, which reach the daemon through package client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Exit statuses of the spearlet command (docs/agent.md). Scripts can tell
// a daemon that is not running from a function that failed.
const (
	ExitOK          = 0
	ExitError       = 1 // any other failure
	ExitUsage       = 2 // bad arguments or flags; the usage was printed
	ExitUnreachable = 3 // the daemon could not be reached
	ExitInvocation  = 4 // the daemon ran the invocation, and it failed
)

// Main runs the command line args, prints an error (with the command's
// usage when the arguments were wrong) to stderr, and returns the exit
// status. ctx ends on SIGINT or SIGTERM; stopSignals restores the default
// signal handling (serve calls it once a shutdown has begun, so that a
// second signal kills the process).
func Main(ctx context.Context, args []string, stopSignals func(), stderr io.Writer) int {
	err := Run(ctx, args, stopSignals)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "spearlet:", err)
	if ue, ok := errors.AsType[*usageError](err); ok && ue.cmd != nil {
		fmt.Fprintf(stderr, "\nUsage: %s\nRun '%s --help' for more.\n", ue.cmd.UseLine(), ue.cmd.CommandPath())
	}
	return ExitCode(err)
}

// Run runs the command line args and returns its error; Main prints it.
func Run(ctx context.Context, args []string, stopSignals func()) error {
	root := newRoot(stopSignals)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return &usageError{cmd: cmd, err: err}
	}
	return err
}

// ExitCode returns the exit status that reports err.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, new(*usageError)):
		return ExitUsage
	case errors.As(err, new(*unreachableError)):
		return ExitUnreachable
	case errors.As(err, new(*invocationError)):
		return ExitInvocation
	}
	return ExitError
}

// usageError is a command used wrongly: Main prints the usage after it.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a *usageError of cmd.
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// invocationError is an invocation that the daemon ran, or refused, with
// an error of its own.
type invocationError struct{ err error }

func (e *invocationError) Error() string { return e.err.Error() }
func (e *invocationError) Unwrap() error { return e.err }

func newRoot(stopSignals func()) *cobra.Command {
	root := &cobra.Command{
		Use:   "spearlet",
		Short: "Spear node agent: run functions in runtime instances and invoke them",
		Long: `Spear node agent: run functions in runtime instances and invoke them.

  spearlet serve                    run the daemon (the embedded default serves "echo" and "wasm-echo")
  spearlet invoke echo hello        invoke a function through the running daemon
  spearlet new function NAME --lang go|python|typescript

Exit status: 0 success, 1 error, 2 wrong arguments or flags, 3 the daemon
could not be reached, 4 the invocation failed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd, err: flagHint(cmd, err)}
	})
	root.AddCommand(
		newServeCmd(stopSignals),
		newWorkerCmd(),
		newInvokeCmd(),
		newInstancesCmd(),
		newFunctionsCmd(),
		newHealthCmd(),
		newDashboardCmd(),
		newReloadCmd(),
		newVersionCmd(),
		newConformanceCmd(),
		newNewCmd(),
	)
	usageOnArgErrors(root)
	return root
}

// usageOnArgErrors makes the argument checks of cmd and its subcommands
// return *usageError values.
func usageOnArgErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &usageError{cmd: c, err: err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageOnArgErrors(c)
	}
}

// flagHint adds to an unknown-flag error on serve that the client flags
// belong to the client commands.
func flagHint(cmd *cobra.Command, err error) error {
	if cmd.Name() != "serve" {
		return err
	}
	for _, f := range []string{"--addr", "-o", "--output"} {
		if strings.Contains(err.Error(), "flag: "+f) || strings.Contains(err.Error(), "shorthand flag: '"+strings.TrimPrefix(f, "-")+"'") {
			return fmt.Errorf("%w (%s is a flag of the client commands, such as invoke; serve listens on --api-http-addr)", err, f)
		}
	}
	return err
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
