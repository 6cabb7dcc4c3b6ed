package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/buildinfo"
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
			bi := buildinfo.Read(Version)
			fmt.Fprintf(cmd.OutOrStdout(), "spearlet %s", bi.Version)
			if bi.Revision != "unknown" {
				fmt.Fprintf(cmd.OutOrStdout(), " (%.12s)", bi.Revision)
			}
			fmt.Fprintf(cmd.OutOrStdout(), " %s %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
		},
	}
}
