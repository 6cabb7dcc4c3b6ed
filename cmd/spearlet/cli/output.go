package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/yamlpos"
)

// outputFlag is -o, the format of a command that prints data: a table for
// people (the default), or JSON or YAML for programs.
type outputFlag struct {
	format  string
	formats []string // the first is the default
}

// addOutput gives cmd an -o flag taking formats (default table, json,
// yaml), the first being the default.
func addOutput(cmd *cobra.Command, formats ...string) *outputFlag {
	if len(formats) == 0 {
		formats = []string{"table", "json", "yaml"}
	}
	o := &outputFlag{format: formats[0], formats: formats}
	cmd.Flags().VarP(o, "output", "o", "output format: "+strings.Join(formats, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	return o
}

// String, Set and Type make outputFlag a pflag.Value, so that a format it
// does not know is a flag error, with the usage.
func (o *outputFlag) String() string { return o.format }

// Set checks and sets the format.
func (o *outputFlag) Set(s string) error {
	if !slices.Contains(o.formats, s) {
		return fmt.Errorf("unknown format %q: want %s", s, strings.Join(o.formats, ", "))
	}
	o.format = s
	return nil
}

// Type names the flag's value in the usage.
func (o *outputFlag) Type() string { return "format" }

// print writes v in the chosen format; for "table" (and the commands'
// other text formats) it calls table.
func (o *outputFlag) print(w io.Writer, v any, table func(w io.Writer) error) error {
	switch o.format {
	case "json":
		return printJSON(w, v)
	case "yaml":
		return printYAML(w, v)
	}
	return table(w)
}

// printTable writes rows through a tabwriter, aligning the columns.
func printTable(w io.Writer, rows func(tw io.Writer)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows(tw)
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML writes v's JSON form as YAML, keeping the order of the fields.
func printYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	n, err := yamlpos.FromJSON(b)
	if err != nil {
		return err
	}
	return yamlpos.WriteYAML(w, n)
}
