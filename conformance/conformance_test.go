package conformance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/conformance"
	"github.com/spear-go/spear/internal/chantls"
)

// fixtures holds the built fixture binaries.
var fixtures string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "conformance-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtures = dir
	for _, name := range []string{"goinstance", "broken"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./fixtures/"+name).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// The Go SDK, the reference implementation, passes every check on every
// transport it supports.
func TestGoSDKConforms(t *testing.T) {
	t.Parallel()
	rep, err := conformance.Run(testCtx(t), conformance.Options{
		Command:    []string{filepath.Join(fixtures, "goinstance")},
		Transports: []channel.Type{channel.Unix, channel.TCP, channel.GRPC},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Skipped != 0 || rep.Passed != 3*len(conformance.Checks()) {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("the Go SDK does not conform:\n%s", b.String())
	}
}

// Over TLS in mutual mode, the Go SDK passes every check on tcp and grpc:
// it checks the runner's pinned certificate and presents the one issued
// for it. (.ci/run does the same for the Python and TypeScript SDKs.)
func TestGoSDKConformsOverTLS(t *testing.T) {
	t.Parallel()
	rep, err := conformance.Run(testCtx(t), conformance.Options{
		Command:    []string{filepath.Join(fixtures, "goinstance")},
		Transports: []channel.Type{channel.TCP, channel.GRPC},
		TLS:        chantls.Mutual,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Skipped != 0 {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("the Go SDK does not conform over TLS:\n%s", b.String())
	}
}

// brokenFails are the checks the broken fixture is built to fail (see
// fixtures/broken).
var brokenFails = []string{
	"bad-agent-proof", "secret-handoff", "heartbeat-echo", "cancel", "deadline",
	"payload-over-limit", "sigterm", "reconnect",
}

// A deliberately broken instance fails exactly the checks it breaks, and
// passes the others: each check tests its own item, and a failure does not
// spill into the next check.
func TestBrokenInstanceFailsWhatItBreaks(t *testing.T) {
	t.Parallel()
	var progress []conformance.Result
	rep, err := conformance.Run(testCtx(t), conformance.Options{
		Command:    []string{filepath.Join(fixtures, "broken")},
		Transports: []channel.Type{channel.Unix},
		MaxPayload: 1 << 20,
		Patience:   3 * time.Second,
		Progress:   func(r conformance.Result) { progress = append(progress, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteTable(&b)
	if got := rep.Failures(); !slices.Equal(got, brokenFails) {
		t.Fatalf("failed %v, want exactly %v:\n%s", got, brokenFails, b.String())
	}
	if rep.Passed != len(conformance.Checks())-len(brokenFails) || rep.Skipped != 0 {
		t.Fatalf("passed %d, skipped %d:\n%s", rep.Passed, rep.Skipped, b.String())
	}
	if len(progress) != len(rep.Results) {
		t.Errorf("Progress saw %d results, the report has %d", len(progress), len(rep.Results))
	}
	// The failures say what went wrong.
	for _, res := range rep.Results {
		if res.Status == conformance.Fail && res.Detail == "" {
			t.Errorf("%s failed without a detail", res.Check)
		}
	}
	if !strings.Contains(b.String(), fmt.Sprintf("%d passed, %d failed, 0 skipped", rep.Passed, rep.Failed)) {
		t.Errorf("the table does not close with the counts:\n%s", b.String())
	}
}

// The wasm guest library passes every check that applies to a wasm
// module, run through the wasm runtime.
func TestGuestLibraryConforms(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	module := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command("go", "build", "-o", module, "./fixtures/guest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the guest fixture: %v\n%s", err, out)
	}
	b, err := os.ReadFile(module)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := conformance.Run(testCtx(t), conformance.Options{Wasm: b})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	// Skipped: what a guest cannot do (no fds, files or signals; one
	// connection; no heartbeats on memory channels).
	wantSkipped := []string{"secret-handoff", "heartbeat-busy", "sigterm", "reconnect"}
	var skipped []string
	for _, r := range rep.Results {
		if r.Status == conformance.Skip {
			skipped = append(skipped, r.Check)
		}
	}
	if !rep.OK() || !slices.Equal(skipped, wantSkipped) || rep.Transports[0] != "memory" {
		t.Fatalf("the guest library does not conform (skipped %v, want %v):\n%s", skipped, wantSkipped, table.String())
	}
}

func TestOptionsAreChecked(t *testing.T) {
	ctx := testCtx(t)
	for name, opts := range map[string]conformance.Options{
		"nothing":       {},
		"both":          {Command: []string{"x"}, Wasm: []byte{0}},
		"unknown check": {Command: []string{"x"}, Only: []string{"no-such-check"}},
		"memory":        {Command: []string{"x"}, Transports: []channel.Type{channel.Memory}},
		"bad transport": {Command: []string{"x"}, Transports: []channel.Type{"carrier-pigeon"}},
		"huge limit":    {Command: []string{"x"}, MaxPayload: 64 << 20},
		"tiny limit":    {Command: []string{"x"}, MaxPayload: 10},
		"bad tls mode":  {Command: []string{"x"}, TLS: "maybe"},
	} {
		if _, err := conformance.Run(ctx, opts); err == nil {
			t.Errorf("%s: Run accepted %+v", name, opts)
		}
	}
}

// A command that is not an instance fails every check it reaches, with
// the reason, and the run itself succeeds.
func TestNotAnInstance(t *testing.T) {
	rep, err := conformance.Run(testCtx(t), conformance.Options{
		Command:    []string{"sh", "-c", "echo not an instance >&2; exit 3"},
		Transports: []channel.Type{channel.TCP},
		Only:       []string{"handshake", "reconnect"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 2 || rep.OK() {
		t.Fatalf("got %+v, want two failures", rep)
	}
	for _, r := range rep.Results {
		if !strings.Contains(r.Detail, "not an instance") {
			t.Errorf("%s: the detail does not quote the instance's output: %s", r.Check, r.Detail)
		}
	}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back conformance.Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Failed != 2 || len(back.Results) != 2 {
		t.Fatalf("JSON round trip: %v, %+v", err, back)
	}
}
