// Package checkout finds the Spear source checkout a command runs in, for
// the tools that use the SDKs from source: the scaffold (which points a new
// function at them) and the benchmarks (which start instances on them).
package checkout

import (
	"os"
	"path/filepath"
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

// PythonSDK returns the Python SDK's directory under root.
func PythonSDK(root string) string { return filepath.Join(root, "sdk", "python") }

// TypeScriptSDK returns the TypeScript SDK's directory under root.
func TypeScriptSDK(root string) string { return filepath.Join(root, "sdk", "typescript") }
