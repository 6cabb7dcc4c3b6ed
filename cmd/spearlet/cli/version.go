package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the spearlet version, set at build time with
// -ldflags "-X github.com/spear-go/spear/cmd/spearlet/cli.Version=v1.2.3";
// otherwise the module version from the build info.
var Version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v, rev := Version, ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				if v == "" {
					v = bi.Main.Version
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = s.Value
					}
				}
			}
			if v == "" {
				v = "(devel)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "spearlet %s", v)
			if rev != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " (%.12s)", rev)
			}
			fmt.Fprintf(cmd.OutOrStdout(), " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
