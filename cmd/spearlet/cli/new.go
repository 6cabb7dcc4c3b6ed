package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/checkout"
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
	var (
		opts   scaffold.Options
		noTidy bool
	)
	cmd := &cobra.Command{
		Use:   "function NAME --lang " + strings.Join(scaffold.Languages(), "|"),
		Short: "Write a ready function and a config entry that serves it",
		Long: `Function writes a new function in directory NAME (or --dir): its source, what
its language's tools need, and spearlet.yaml, a config that serves it.

The function uses the Spear SDK of the checkout given with --sdk; by default
the checkout the current directory is in, else the one this spearlet was
built from (a Go function's go.mod points at it with a replace directive).
A spearlet installed from a published version uses that version. A Go
function's dependencies are fetched with "go mod tidy" (--no-tidy skips it).`,
		Example: `  spearlet new function upper --lang go
  spearlet new function hello --lang python
  spearlet new function hello --lang typescript --sdk ~/src/spear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			opts.Name = args[0]
			if opts.SDK == "" {
				cwd, err := os.Getwd()
				if err != nil {
					return err
				}
				opts.SDK = scaffold.FindSDK(cwd)
			}
			if opts.SDK == "" {
				opts.Version = checkout.Version()
			}
			written, err := scaffold.Write(opts)
			for _, p := range written {
				fmt.Fprintln(out, "wrote", p)
			}
			if errors.Is(err, scaffold.ErrNoSDK) {
				return usagef(cmd, "this spearlet knows no Spear checkout and no published version of the Go module: give --sdk with your clone's directory")
			}
			if err != nil {
				return err
			}
			dir := dirOf(opts)
			if opts.SDK != "" {
				fmt.Fprintf(out, "\nIt uses the Spear SDK of the checkout in %s.\n", opts.SDK)
			} else {
				fmt.Fprintln(out, "\nIt uses the published Spear SDK.")
			}
			if opts.Lang == "go" && !noTidy {
				if err := goModTidy(cmd, dir); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "\nNext: see %s/README.md; in short\n  cd %s\n", dir, dir)
			if opts.Lang == "go" {
				fmt.Fprintf(out, "  go build -o %s .\n", opts.Name)
			}
			fmt.Fprintf(out, "  spearlet serve --config spearlet.yaml\n  spearlet invoke %s hello\n", opts.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Lang, "lang", "", "language: "+strings.Join(scaffold.Languages(), ", "))
	f.StringVar(&opts.Dir, "dir", "", "directory to write (default ./NAME); must not exist or be empty")
	f.StringVar(&opts.SDK, "sdk", "", "root of the Spear checkout whose SDK the function uses")
	f.BoolVar(&noTidy, "no-tidy", false, `do not run "go mod tidy" in a new Go function`)
	_ = cmd.MarkFlagRequired("lang")
	_ = cmd.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions(scaffold.Languages(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// goModTidy runs "go mod tidy" in dir, showing its output, when go is
// installed; otherwise it says to.
func goModTidy(cmd *cobra.Command, dir string) error {
	if _, err := exec.LookPath("go"); err != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "\nGo is not on PATH: install it, then run \"go mod tidy\" in %s.\n", dir)
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout(), "\nrunning go mod tidy")
	tidy := exec.CommandContext(cmd.Context(), "go", "mod", "tidy")
	tidy.Dir = dir
	tidy.Stdout, tidy.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
	if err := tidy.Run(); err != nil {
		return fmt.Errorf("go mod tidy in %s: %w (the files are written; run it again once it can succeed)", dir, err)
	}
	return nil
}

func dirOf(o scaffold.Options) string {
	if o.Dir != "" {
		return o.Dir
	}
	return o.Name
}
