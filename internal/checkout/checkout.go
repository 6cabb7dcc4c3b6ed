// Package checkout finds the Spear source checkout a command runs in, for
// the tools that use the SDKs from source: the scaffold (which points a new
// function at them) and the benchmarks (which start instances on them).
package checkout

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// Module is the Spear module's path, as go.mod declares it.
const Module = "github.com/spear-go/spear"

// Root returns the root of the Spear checkout containing dir (a directory
// whose go.mod declares Module and which has the SDKs under sdk/), or ""
// when dir is not inside one.
func Root(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(mod), "module "+Module+"\n") {
			if _, err := os.Stat(filepath.Join(dir, "sdk", "python", "pyproject.toml")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Built returns the root of the checkout the running program was built
// from, when it is still there: a spearlet built with "go build" or "go
// install ./cmd/spearlet" in a clone knows its clone. It returns "" for a
// program built with -trimpath, or from the module cache (go install
// ...@version), whose source is a published version, not a checkout.
func Built() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) || strings.Contains(filepath.ToSlash(file), "/pkg/mod/") {
		return ""
	}
	return Root(filepath.Dir(file))
}

// Version returns the Spear module version the running program was built
// at, when it is a version the module proxy serves (go install
// ...@version); "" for a build from a checkout ("(devel)", or a "+dirty"
// or local pseudo-version).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	mod := &bi.Main
	if mod.Path != Module {
		for _, d := range bi.Deps {
			if d.Path == Module {
				mod = d
			}
		}
	}
	v := mod.Version
	if mod.Path != Module || !strings.HasPrefix(v, "v") || strings.Contains(v, "+") || Built() != "" {
		return ""
	}
	return v
}

// PythonSDK returns the Python SDK's directory under root.
func PythonSDK(root string) string { return filepath.Join(root, "sdk", "python") }

// TypeScriptSDK returns the TypeScript SDK's directory under root.
func TypeScriptSDK(root string) string { return filepath.Join(root, "sdk", "typescript") }
