package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/scaffold"
)

func newNewCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create things from templates",
	}
	cmd.AddCommand(newFunctionCmd())
	return cmd
}

func newFunctionCmd() *cobra.Command {
	var opts scaffold.Options
	cmd := &cobra.Command{
		Use:   "function NAME --lang " + strings.Join(scaffold.Languages(), "|"),
		Short: "Write a ready function and a config entry that serves it",
		Long: `Function writes a new function in directory NAME (or --dir): its source, what
its language's tools need, and spearlet.yaml, a config that serves it.

The function uses the SDK of the Spear checkout given with --sdk, by
default the one the current directory is in; outside a checkout, the
published package.`,
		Example: `  spearlet new function hello --lang python
  spearlet new function hello --lang typescript --sdk ~/src/spear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.SDK == "" {
				cwd, err := os.Getwd()
				if err != nil {
					return err
				}
				opts.SDK = scaffold.FindSDK(cwd)
			}
			written, err := scaffold.Write(opts)
			for _, p := range written {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			if err != nil {
				return err
			}
			if opts.SDK == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "\nNo Spear checkout found: the function uses the published SDK (give --sdk to use a checkout's).")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\nNext: see %s/README.md to build it, then\n  spearlet serve --config %s/spearlet.yaml\n  spearlet invoke %s world\n",
				dirOf(opts), dirOf(opts), opts.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Lang, "lang", "", "language: "+strings.Join(scaffold.Languages(), ", "))
	f.StringVar(&opts.Dir, "dir", "", "directory to write (default ./NAME); must not exist or be empty")
	f.StringVar(&opts.SDK, "sdk", "", "root of the Spear checkout whose SDK the function uses")
	_ = cmd.MarkFlagRequired("lang")
	return cmd
}

func dirOf(o scaffold.Options) string {
	if o.Dir != "" {
		return o.Dir
	}
	return o.Name
}
