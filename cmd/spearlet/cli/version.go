package cli

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/internal/buildinfo"
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
	bi := buildinfo.Read(Version)
	v := versionInfo{Version: bi.Version, Go: bi.GoVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi.Revision != "unknown" {
		v.Revision = bi.Revision
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
