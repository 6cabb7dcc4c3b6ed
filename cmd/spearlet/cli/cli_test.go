package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
)

// main runs the command line as the spearlet binary does and returns its
// exit status, stdout and stderr.
func mainCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	root := newRoot(func() {})
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(context.Background())
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = &usageError{cmd: cmd, err: err}
	}
	if err != nil {
		errOut.WriteString("spearlet: " + err.Error() + "\n")
		if ue, ok := errors.AsType[*usageError](err); ok {
			errOut.WriteString("Usage: " + ue.cmd.UseLine() + "\n")
		}
	}
	return ExitCode(err), out.String(), errOut.String()
}

// stubDaemon answers the API calls the CLI makes, as a daemon with the
// functions echo and fail would.
func stubDaemon(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.FunctionList{Functions: []api.Function{{Name: "echo", Runtime: "process"}, {Name: "fail", Runtime: "wasm"}}})
	})
	mux.HandleFunc("GET /v1/instances", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.InstanceList{Instances: []api.Instance{
			{ID: "process:echo-1a2b3c4d", Function: "echo", Status: "running"},
			{ID: "process:echo-5e6f7a8b", Function: "echo", Status: "stopped"},
		}})
	})
	mux.HandleFunc("POST /v1/functions/echo/invoke", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderInstance, "process:echo-1a2b3c4d")
		w.Write([]byte("hi " + r.URL.Query().Get("timeout")))
	})
	mux.HandleFunc("POST /v1/functions/fail/invoke", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		json.NewEncoder(w).Encode(api.Error{Error: api.ErrorDetail{Code: "function_internal", Message: "boom"}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// deadAddr returns an address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Each kind of failure has its own exit status, and a wrong argument
// shows the usage.
func TestExitCodes(t *testing.T) {
	live, dead := stubDaemon(t), deadAddr(t)
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"invoke", "echo", "x", "--addr", live}, ExitOK, ""},
		{[]string{"invoke"}, ExitUsage, "Usage: spearlet invoke FUNCTION [DATA] [flags]"},
		{[]string{"invoke", "a", "b", "c"}, ExitUsage, "accepts between 1 and 2 arg(s), received 3"},
		{[]string{"invoke", "echo", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{[]string{"invoke", "echo", "x", "-f", "file"}, ExitUsage, "give DATA or -f FILE, not both"},
		{[]string{"nosuchcommand"}, ExitUsage, `unknown command "nosuchcommand"`},
		{[]string{"invoke", "echo", "x", "--addr", dead}, ExitUnreachable, `Start one with "spearlet serve"`},
		{[]string{"functions", "--addr", dead}, ExitUnreachable, "cannot reach the spearlet daemon"},
		{[]string{"instances", "list", "--addr", dead}, ExitUnreachable, "connection refused"},
		{[]string{"invoke", "fail", "x", "--addr", live}, ExitInvocation, "function_internal (500): boom"},
		{[]string{"conformance", "--only", "no-such-check", "--", "true"}, ExitError, "no-such-check"},
	} {
		code, _, stderr := mainCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
}

// -t takes a bare number of seconds; a wrong value says how to write one.
func TestDurationFlags(t *testing.T) {
	live := stubDaemon(t)
	code, out, stderr := mainCLI(t, "invoke", "echo", "-t", "5", "--addr", live)
	if code != ExitOK || out != "hi 5s" {
		t.Errorf("-t 5: exit %d, %q %s", code, out, stderr)
	}
	code, _, stderr = mainCLI(t, "invoke", "echo", "-t", "5x", "--addr", live)
	if code != ExitUsage || !strings.Contains(stderr, "such as 5s, 250ms or 2m, or a number of seconds") {
		t.Errorf("-t 5x: exit %d, %s", code, stderr)
	}
}

// Client flags belong to client commands: serve refuses them, saying so.
func TestServeRefusesClientFlags(t *testing.T) {
	for _, args := range [][]string{{"serve", "--addr", "x"}, {"serve", "-o", "json"}} {
		code, _, stderr := mainCLI(t, args...)
		if code != ExitUsage || !strings.Contains(stderr, "is a flag of the client commands") {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
	if code, _, stderr := mainCLI(t, "serve", "--print-config", "--bogus"); code != ExitUsage {
		t.Errorf("serve --bogus: exit %d, %s", code, stderr)
	}
	root := newRoot(func() {})
	if root.PersistentFlags().Lookup("addr") != nil || root.PersistentFlags().Lookup("output") != nil {
		t.Error("the client flags are global")
	}
}

// --print-config prints every section, defaults filled in, secrets
// hidden, and the renamed listener flags (and their old names, with a
// warning) set what they say.
func TestPrintConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte(`functions:
  - name: f
    runtime: process
    command: ./f
    env: {API_TOKEN: s3cret, LOG_LEVEL: debug, TOKEN_FILE: /run/t}
`), 0o600)
	code, out, stderr := mainCLI(t, "serve", "-c", cfgPath, "--print-config", "--channels-grpc-addr", "0.0.0.0:7070", "--api-grpc-addr", "127.0.0.1:9")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, key := range []string{"api", "channels", "kubernetes", "wasm", "invoke_timeout", "shutdown_grace", "max_payload", "functions"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("--print-config lacks %s:\n%s", key, out)
		}
	}
	for _, want := range []string{"grpc_addr: 0.0.0.0:7070", "grpc_addr: 127.0.0.1:9", "heartbeat_interval: 5s", "API_TOKEN: <redacted>",
		"LOG_LEVEL: debug", "TOKEN_FILE: /run/t", "command: " + filepath.Join(dir, "f"), "namespace: \"\""} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("--print-config shows a secret:\n%s", out)
	}
	// What it prints loads again: durations such as auth_timeout are not
	// taken for secrets.
	again := filepath.Join(dir, "again.yaml")
	os.WriteFile(again, []byte(out), 0o600)
	if _, err := loadConfig(again); err != nil || strings.Contains(out, "auth_timeout: <redacted>") {
		t.Errorf("--print-config's output does not load again: %v\n%s", err, out)
	}
	// The old name still works, hidden, with a warning (on stderr in the
	// binary; where SetOut sends it here).
	code, out, stderr = mainCLI(t, "serve", "--print-config=json", "--grpc-addr", "0.0.0.0:7171")
	warning, out, _ := strings.Cut(out, "\n{")
	stderr += warning
	out = "{" + out
	var cfg struct {
		Channels struct {
			GRPCAddr string `json:"grpc_addr"`
		} `json:"channels"`
	}
	if code != ExitOK || json.Unmarshal([]byte(out), &cfg) != nil || cfg.Channels.GRPCAddr != "0.0.0.0:7171" {
		t.Errorf("--grpc-addr: exit %d, %s %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "--grpc-addr has been deprecated, use --channels-grpc-addr") {
		t.Errorf("no deprecation warning: %q", stderr)
	}
	var help bytes.Buffer
	root := newRoot(func() {})
	root.SetOut(&help)
	root.SetArgs([]string{"serve", "--help"})
	root.Execute()
	if strings.Contains(help.String(), "--grpc-addr ") || !strings.Contains(help.String(), "--channels-grpc-addr") {
		t.Errorf("serve --help:\n%s", help.String())
	}
}

// Every command that prints data takes -o json and -o yaml.
func TestOutputFormats(t *testing.T) {
	live := stubDaemon(t)
	for _, args := range [][]string{
		{"functions"}, {"instances"}, {"instances", "list"}, {"invoke", "echo"}, {"health"}, {"version"}, {"conformance", "--list"},
	} {
		for _, format := range []string{"json", "yaml"} {
			a := append(append([]string{}, args...), "-o", format)
			if args[0] != "version" && args[0] != "conformance" {
				a = append(a, "--addr", live)
			}
			if args[0] == "health" {
				continue // the stub has no /healthz; health -o is checked below
			}
			code, out, stderr := mainCLI(t, a...)
			var v any
			var err error
			if format == "json" {
				err = json.Unmarshal([]byte(out), &v)
			} else {
				err = yaml.Unmarshal([]byte(out), &v)
			}
			if code != ExitOK || err != nil || v == nil {
				t.Errorf("%v: exit %d, %v\n%s%s", a, code, err, out, stderr)
			}
		}
	}
	_, out, _ := mainCLI(t, "functions", "-o", "yaml", "--addr", live)
	if !strings.HasPrefix(out, "- name: echo\n  runtime: process\n") {
		t.Errorf("functions -o yaml:\n%s", out)
	}
	if code, _, stderr := mainCLI(t, "functions", "-o", "xml", "--addr", live); code != ExitUsage || !strings.Contains(stderr, "want table, json, yaml") {
		t.Errorf("-o xml: exit %d, %s", code, stderr)
	}
	if code, _, stderr := mainCLI(t, "invoke", "echo", "--stream", "-o", "json", "--addr", live); code != ExitUsage {
		t.Errorf("--stream -o json: exit %d, %s", code, stderr)
	}
}

// Completion offers the running daemon's function names and instance
// ids, and nothing (quietly) when no daemon runs.
func TestDynamicCompletion(t *testing.T) {
	live, dead := stubDaemon(t), deadAddr(t)
	for _, tt := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"__complete", "invoke", "--addr", live, ""}, []string{"echo\tprocess", "fail\twasm"}, nil},
		{[]string{"__complete", "instances", "create", "--addr", live, "e"}, []string{"echo"}, nil},
		{[]string{"__complete", "instances", "delete", "--addr", live, ""}, []string{"process:echo-1a2b3c4d"}, []string{"process:echo-5e6f7a8b"}},
		{[]string{"__complete", "instances", "logs", "--addr", live, ""}, []string{"process:echo-1a2b3c4d", "process:echo-5e6f7a8b"}, nil},
		{[]string{"__complete", "instances", "--addr", live, "--function", ""}, []string{"echo", "fail"}, nil},
		{[]string{"__complete", "invoke", "--addr", dead, ""}, []string{":4"}, []string{"echo"}},
		{[]string{"__complete", "invoke", "echo", "--addr", live, ""}, []string{":4"}, []string{"fail"}},
	} {
		_, out, _ := mainCLI(t, tt.args...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: no %q in\n%s", tt.args, w, out)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(out, w) {
				t.Errorf("%v: %q in\n%s", tt.args, w, out)
			}
		}
	}
}

// The CLI finds the daemon through one function; the environment works
// as --addr does.
func TestDaemonFromEnv(t *testing.T) {
	t.Setenv(client.EnvAddr, stubDaemon(t))
	if code, out, stderr := mainCLI(t, "invoke", "echo"); code != ExitOK || !strings.HasPrefix(out, "hi") {
		t.Errorf("exit %d %q %s", code, out, stderr)
	}
}
