package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/conformance"
	"github.com/spear-go/spear/internal/chantls"
)

// errNotConformant makes the command exit non-zero after it printed its
// report.
var errNotConformant = errors.New("the instance failed conformance checks")

func newConformanceCmd() *cobra.Command {
	var (
		opts       conformance.Options
		transports []string
		wasmFile   string
		list       bool
		verbose    bool
		tlsMode    string
	)
	cmd := &cobra.Command{
		Use:   "conformance [flags] -- COMMAND [ARGS...]",
		Short: "Check that an instance implementation speaks the Spear protocol",
		Long: `Conformance starts COMMAND as a function instance, as the agent does, on each
transport it claims (--transports), and checks it against docs/protocol.md:
the handshake (and that it refuses an agent with a wrong proof), the secret
hand-off, heartbeats, concurrent requests, streaming, cancellation,
deadlines, payload limits, unknown methods, signals, terminate, SIGTERM and
reconnecting. The instance must serve the conformance handler contract
(docs/conformance.md). With --wasm, a WASI module runs through the wasm
runtime instead.

It prints a pass/fail table (or JSON or YAML with -o) and exits non-zero
when a check fails.`,
		Example: `  spearlet conformance -- python3 conformance/fixtures/python/instance.py
  spearlet conformance --transports unix -- node instance.js
  spearlet conformance --wasm guest.wasm -o json`,
	}
	output := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		if list {
			return output.print(out, conformance.Checks(), listChecks)
		}
		if wasmFile != "" {
			if len(args) > 0 {
				return usagef(cmd, "give --wasm or a command, not both")
			}
			b, err := os.ReadFile(wasmFile)
			if err != nil {
				return err
			}
			opts.Wasm = b
		} else if len(args) == 0 {
			return usagef(cmd, "give the instance's command after --, or --wasm FILE")
		}
		opts.Command = args
		opts.TLS = chantls.Mode(tlsMode)
		for _, t := range transports {
			ct, err := channel.ParseType(strings.TrimSpace(t))
			if err != nil {
				return usagef(cmd, "--transports: %v", err)
			}
			opts.Transports = append(opts.Transports, ct)
		}
		if verbose {
			errOut := cmd.ErrOrStderr()
			opts.Logger = slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts.Progress = func(r conformance.Result) {
				fmt.Fprintf(errOut, "%-5s %-18s %s  %s\n", r.Transport, r.Check, r.Status, r.Detail)
			}
		}
		rep, err := conformance.Run(cmd.Context(), opts)
		if err != nil {
			return err
		}
		if err := output.print(out, rep, rep.WriteTable); err != nil {
			return err
		}
		if !rep.OK() {
			return fmt.Errorf("%w: %s", errNotConformant, strings.Join(rep.Failures(), ", "))
		}
		return nil
	}
	f := cmd.Flags()
	f.StringSliceVar(&transports, "transports", []string{"unix", "tcp"}, "transports to check a process instance on: unix, tcp, grpc")
	f.StringVar(&tlsMode, "tls", "none", "run tcp and grpc over TLS: none, server (the instance checks the runner's pinned certificate) or mutual (and presents its own)")
	f.StringVar(&wasmFile, "wasm", "", "check a WASI module, run through the wasm runtime, instead of a command")
	f.StringVar(&opts.Dir, "dir", "", "working directory of the instance")
	f.StringArrayVar(&opts.Env, "env", nil, "KEY=VALUE added to the instance's environment (repeatable)")
	f.Uint32Var(&opts.MaxPayload, "max-payload", 0, "payload limit the agent announces (default and at most 16 MiB)")
	opts.Timeout, opts.Patience = conformance.DefaultTimeout, conformance.DefaultPatience
	f.Var(durationFlag{&opts.Timeout}, "timeout", "bound on each check")
	f.Var(durationFlag{&opts.Patience}, "patience", "how long to wait for what the instance should do promptly")
	f.StringSliceVar(&opts.Only, "only", nil, "run only these checks")
	f.StringSliceVar(&opts.Skip, "skip", nil, "do not run these checks")
	f.BoolVar(&list, "list", false, "list the checks and exit")
	f.BoolVarP(&verbose, "verbose", "v", false, "print each result as it comes, and the agent's logs, to stderr")
	return cmd
}

func listChecks(w io.Writer) error {
	return printTable(w, func(tw io.Writer) {
		for _, c := range conformance.Checks() {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, c.Doc)
		}
	})
}
