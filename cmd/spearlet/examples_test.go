package main

// The Python and TypeScript examples, served through the built spearlet
// and invoked through its CLI, as the READMEs show.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireEnv names the variable that .ci/run sets to make missing
// toolchains or unbuilt examples a failure rather than a skip.
const requireEnv = "SPEAR_REQUIRE_SDKS"

// needs skips the test (or, under requireEnv, fails it) unless the
// program is on PATH and the files exist.
func needs(t *testing.T, program string, files ...string) {
	t.Helper()
	miss := func(what string) {
		if os.Getenv(requireEnv) != "" {
			t.Fatalf("%s (required by %s)", what, requireEnv)
		}
		t.Skip(what)
	}
	if _, err := exec.LookPath(program); err != nil {
		miss(program + " is not installed")
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			miss(f + " is missing; build the example first (see its README)")
		}
	}
}

// repoRoot is the checkout this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestPythonAgentExample(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "examples", "python-agent")
	needs(t, "python3", filepath.Join(dir, "agent.py"))
	cfg := writeConfig(t, `
functions:
  - name: python-agent
    runtime: process
    command: python3
    args: [agent.py]
    dir: `+dir+`
    env: {PYTHONPATH: `+filepath.Join(root, "sdk", "python")+`}
    min_instances: 1
`)
	d := startDaemon(t, "--config", cfg)
	out, err := d.cli(t, "", "invoke", "python-agent", "how do heartbeats work?", "--stream")
	if err != nil {
		t.Fatalf("invoke --stream: %v", err)
	}
	for _, want := range []string{"[plan] answer 'how do heartbeats work?'", "[tool] ", "restate, split, look up, weigh, answer."} {
		if !strings.Contains(out, want) {
			t.Errorf("the streamed answer lacks %q:\n%s", want, out)
		}
	}
	if out, err := d.cli(t, "", "invoke", "python-agent", "-m", "tools"); err != nil || !strings.Contains(out, "checksum") {
		t.Errorf("tools: %q, %v", out, err)
	}
}

func TestTSEchoExample(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "examples", "ts-echo")
	needs(t, "node", filepath.Join(dir, "dist", "index.js"), filepath.Join(root, "sdk", "typescript", "dist", "src", "index.js"))
	cfg := writeConfig(t, `
functions:
  - name: ts-echo
    runtime: process
    command: node
    args: [dist/index.js]
    dir: `+dir+`
    min_instances: 1
`)
	d := startDaemon(t, "--config", cfg)
	out, err := d.cli(t, "", "invoke", "ts-echo", "hello")
	if err != nil || !strings.HasPrefix(out, "process:ts-echo-") || !strings.Contains(out, "|hello") {
		t.Fatalf("invoke: %q, %v", out, err)
	}
	out, err = d.cli(t, "", "invoke", "ts-echo", "one two three", "-m", "stream", "--stream")
	if err != nil || strings.TrimSpace(out) != "onetwothree" { // chunks are printed back to back
		t.Fatalf("invoke --stream: %q, %v", out, err)
	}
	out, err = d.cli(t, "", "invoke", "ts-echo", "shout", "-m", "upper")
	if err != nil || strings.TrimSpace(out) != "SHOUT" {
		t.Fatalf("upper: %q, %v", out, err)
	}
}

// A function written by `spearlet new function --lang python` serves as it
// is, through its own config.
func TestNewPythonFunction(t *testing.T) {
	needs(t, "python3")
	dir := filepath.Join(t.TempDir(), "hello")
	cmd := execCommand(t, "new", "function", "hello", "--lang", "python", "--dir", dir)
	cmd.Dir = repoRoot(t) // the checkout whose SDK it uses
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("new function: %v\n%s", err, out)
	}
	d := startDaemon(t, "--config", filepath.Join(dir, "spearlet.yaml"))
	if out, err := d.cli(t, "", "invoke", "hello", "world"); err != nil || out != "hello, world" {
		t.Fatalf("invoke: %q, %v", out, err)
	}
	if out, err := d.cli(t, "", "invoke", "hello", "one two", "-m", "words", "--stream"); err != nil || out != "one\ntwo\n" {
		t.Fatalf("invoke --stream: %q, %v", out, err)
	}
}
