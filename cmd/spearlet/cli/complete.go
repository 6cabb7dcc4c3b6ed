package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

// completeTimeout bounds the daemon's answer to a completion: a shell
// that waits longer than this feels broken.
const completeTimeout = 2 * time.Second

// Shell completion of function names and instance ids asks the running
// daemon (the one the command's --addr names); with no daemon it offers
// nothing.

// functionNames completes the first argument with the daemon's functions.
func (d *daemonFlags) functionNames(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return d.functionFlag(cmd, args, "")
}

// functionFlag completes a flag's value with the daemon's functions.
func (d *daemonFlags) functionFlag(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
	defer cancel()
	fns, err := d.client().Functions(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, f := range fns {
		out = append(out, cobra.CompletionWithDesc(f.Name, f.Runtime))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// instanceIDs returns a completion of the first argument with the
// daemon's instances: live ones only, or stopped ones too.
func (d *daemonFlags) instanceIDs(withStopped bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		insts, err := d.client().Instances(ctx, "")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, in := range insts {
			if withStopped || in.Status != "stopped" {
				out = append(out, cobra.CompletionWithDesc(in.ID, in.Function+" "+in.Status))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
