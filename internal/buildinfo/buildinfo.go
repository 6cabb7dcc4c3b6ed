// Package buildinfo says which spearlet a binary is: its version, the
// commit it was built from and the Go release that built it. The version
// command prints it and the agent exports it as spearlet_build_info.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info identifies a build. Fields not known are "unknown", never empty,
// so that they make valid label values.
type Info struct {
	Version   string // the module version, or "(devel)"
	Revision  string // the VCS commit
	GoVersion string
}

// Read returns the running binary's build info. A non-empty version (one
// set with -ldflags -X at build time) wins over the module's.
func Read(version string) Info {
	info := Info{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				info.Revision = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	return info
}
