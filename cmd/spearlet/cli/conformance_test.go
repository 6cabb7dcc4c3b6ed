package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spear-go/spear/conformance"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot(func() {})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestConformanceList(t *testing.T) {
	out, err := runCLI(t, "conformance", "--list")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conformance.Checks() {
		if !strings.Contains(out, c.Name) {
			t.Errorf("--list lacks %s:\n%s", c.Name, out)
		}
	}
	out, err = runCLI(t, "conformance", "--list", "-o", "json")
	var checks []conformance.CheckInfo
	if err != nil || json.Unmarshal([]byte(out), &checks) != nil || len(checks) != len(conformance.Checks()) {
		t.Fatalf("--list -o json: %v\n%s", err, out)
	}
}

func TestConformanceRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"conformance"},
		{"conformance", "--wasm", "x.wasm", "--", "cmd"},
		{"conformance", "--transports", "pigeon", "--", "cmd"},
		{"conformance", "--only", "no-such-check", "--", "cmd"},
		{"conformance", "-o", "xml", "--", "cmd"},
	} {
		if _, err := runCLI(t, args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// A failing instance makes the command fail, after printing the report.
func TestConformanceFailsOnFailure(t *testing.T) {
	out, err := runCLI(t, "conformance", "--transports", "tcp", "--only", "handshake", "--", "sh", "-c", "exit 3")
	if err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("err = %v, want a failure naming handshake", err)
	}
	if !strings.Contains(out, "0 passed, 1 failed, 0 skipped") {
		t.Errorf("report:\n%s", out)
	}
}
