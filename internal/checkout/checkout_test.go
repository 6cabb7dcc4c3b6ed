package checkout

import (
	"os"
	"path/filepath"
	"testing"
)

// A program built in a checkout knows its checkout, and that its version
// is not a published one.
func TestBuilt(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if got := Built(); got != root {
		t.Errorf("Built() = %q, want %q", got, root)
	}
	if got := Root(t.TempDir()); got != "" {
		t.Errorf("Root outside a checkout = %q", got)
	}
	if got := Version(); got != "" {
		t.Errorf("Version() of a checkout build = %q, want none", got)
	}
	if _, err := os.Stat(PythonSDK(root)); err != nil {
		t.Error(err)
	}
}
