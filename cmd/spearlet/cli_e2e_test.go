package main

import (
	"bytes"
	"errors"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// run runs the built binary with env added and returns its exit status,
// stdout and stderr.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := execCommand(t, args...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

// The binary's exit statuses and messages, as a script or a person sees
// them: usage on wrong arguments (2), how to start a daemon when none
// answers (3), an invocation's failure (4).
func TestCLIExitStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	code, _, stderr := run(t, []string{"SPEARLET_ADDR=" + dead}, "invoke", "echo", "hello")
	if code != 3 || !strings.Contains(stderr, "cannot reach the spearlet daemon") || !strings.Contains(stderr, `Start one with "spearlet serve"`) {
		t.Errorf("no daemon: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run(t, nil, "invoke")
	if code != 2 || !strings.Contains(stderr, "Usage: spearlet invoke FUNCTION [DATA] [flags]") {
		t.Errorf("no arguments: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run(t, nil, "serve", "--addr", dead)
	if code != 2 || !strings.Contains(stderr, "unknown flag: --addr") {
		t.Errorf("serve --addr: exit %d\n%s", code, stderr)
	}
	d := startDaemon(t)
	env := []string{"SPEARLET_ADDR=" + d.addr, "SPEARLET_STATE_DIR=" + d.stateDir} // over TCP, the token found in the state directory
	code, _, stderr = run(t, env, "invoke", "echo", "-m", "fail", "boom")
	if code != 4 || !strings.Contains(stderr, "boom") {
		t.Errorf("failing invocation: exit %d\n%s", code, stderr)
	}
	// Without the token (another state directory): refused, exit 1, and
	// the message says where the token is.
	code, _, stderr = run(t, []string{"SPEARLET_ADDR=" + d.addr, "SPEARLET_STATE_DIR=" + t.TempDir()}, "invoke", "echo", "hello")
	if code != 1 || !strings.Contains(stderr, "unauthenticated (401)") || !strings.Contains(stderr, "api-token") {
		t.Errorf("no token: exit %d\n%s", code, stderr)
	}
	code, out, stderr := run(t, env, "invoke", "echo", "-m", "sleep", "-t", "5", "10ms")
	if code != 0 || !strings.Contains(out, "slept 10ms") {
		t.Errorf("-t 5: exit %d %q\n%s", code, out, stderr)
	}
	// SIGHUP reloads rather than kills.
	d.signal(syscall.SIGHUP)
	eventually(t, "the reload", func() bool { return strings.Contains(d.logText(), `msg="configuration reloaded"`) })
	if code, out, stderr := run(t, env, "health", "--live"); code != 0 || out != "live\n" {
		t.Errorf("after SIGHUP: health --live exit %d %q\n%s", code, out, stderr)
	}
}

// Every mistake of a configuration is reported by serve when it loads,
// before anything starts: with the file, line and column, and the path of
// the field, also for values that a field's own type refuses (memory
// amounts, inside limits and at a wasm function's top level) and for the
// process runtime's own settings.
func TestServeReportsConfigMistakes(t *testing.T) {
	path := writeConfig(t, `process:
  cgroups: sometimes
  user_range: 2000-1000
functions:
  - name: echo
    runtime: process
    command: /bin/cat
    limits:
      memory: lots
  - name: w
    runtime: wasm
    wasm: "@wasmecho"
    memory: heaps
`)
	code, _, stderr := run(t, []string{"SPEARLET_STATE_DIR=" + t.TempDir()}, "serve", "--config", path)
	want := "spearlet: " + path + `:2:12: process.cgroups: "sometimes": want auto, none or required
` + path + `:3:15: process.user_range: 2000-1000: want FIRST-LAST with FIRST above 0 (root) and LAST not below it, such as 200000-200999
` + path + `:9:15: functions[0].limits.memory: "lots" is not a whole number of bytes with an optional suffix such as Mi or G
` + path + `:13:13: functions[1].memory: "heaps" is not a whole number of bytes with an optional suffix such as Mi or G
`
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and:\n%s", code, stderr, want)
	}
}
