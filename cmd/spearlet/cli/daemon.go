package cli

import (
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/internal/statedir"
)

// All the CLI knows about where the daemon listens is in this file: the
// flag and the environment that say it, the defaults (client.FromEnv), and
// what to say when nothing answers there.

// daemonFlags say how a client command reaches the daemon.
type daemonFlags struct{ addr, stateDir string }

// clientCommand makes cmd, and its subcommands, client commands: they
// take --addr, and a failure to reach the daemon becomes an
// *unreachableError that says how to start one. Call it once cmd's RunE
// and subcommands are set.
func clientCommand(cmd *cobra.Command) *daemonFlags {
	d := &daemonFlags{}
	cmd.PersistentFlags().StringVar(&d.addr, "addr", "",
		"daemon API address: host:port, URL or unix:PATH (default $"+client.EnvAddr+", else the socket in the state directory, else "+client.DefaultAddr+")")
	cmd.PersistentFlags().StringVar(&d.stateDir, "state-dir", "",
		"the daemon's state directory, where its API socket and token are (default $"+client.EnvStateDir+", else "+statedir.Default()+")")
	d.wrap(cmd)
	return d
}

func (d *daemonFlags) wrap(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return d.explain(run(c, args)) }
	}
	for _, c := range cmd.Commands() {
		d.wrap(c)
	}
}

// client returns a client of the daemon the flags name. It finds the
// daemon's socket, or its token for TCP, in the state directory.
func (d *daemonFlags) client() *client.Client {
	c := client.FromEnv(d.addr)
	if d.stateDir != "" {
		c.StateDir = d.stateDir
	}
	return c
}

// unreachableError is a daemon that did not answer: nothing listens where
// the CLI looked, or the address is wrong.
type unreachableError struct {
	err  error
	hint string // said after the advice, when the command has more to say
}

func (e *unreachableError) Error() string {
	msg := fmt.Sprintf("cannot reach the spearlet daemon: %v\n"+
		"Is it running? Start one with \"spearlet serve\", or point --addr (or $%s) at the one you run.", e.err, client.EnvAddr)
	if e.hint != "" {
		msg += "\n" + e.hint
	}
	return msg
}

func (e *unreachableError) Unwrap() error { return e.err }

// explain turns err into an *unreachableError when the connection to the
// daemon could not be made, over tcp or a unix socket alike.
func (d *daemonFlags) explain(err error) error {
	if _, ok := errors.AsType[*unreachableError](err); ok {
		return err // already explained
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return &unreachableError{err: op}
	}
	return err
}
