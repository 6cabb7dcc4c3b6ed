package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the spearlet version, set at build time with
// -ldflags "-X github.com/spear-go/spear/cmd/spearlet/cli.Version=v1.2.3";
// otherwise the module version from the build info.
var Version = ""

// versionInfo is what version prints.
type versionInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: Version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

func newVersionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
	}
	out := addOutput(cmd, "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := buildVersion()
		return out.print(cmd.OutOrStdout(), v, func(w io.Writer) error {
			fmt.Fprintf(w, "spearlet %s", v.Version)
			if v.Revision != "" {
				fmt.Fprintf(w, " (%.12s)", v.Revision)
			}
			_, err := fmt.Fprintf(w, " %s %s\n", v.Go, v.Platform)
			return err
		})
	}
	return cmd
}
