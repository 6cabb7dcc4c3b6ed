package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
)

// The binary takes a relative state_dir from its config file as the
// file's directory's: serve --config A/spearlet.yaml, started in B, puts
// its API socket and token in A/state, prints that path with
// --print-config, and leaves B alone.
func TestServeConfigRelativePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	a, b := t.TempDir(), t.TempDir()
	config := filepath.Join(a, "spearlet.yaml")
	yaml := "state_dir: state\napi: {http_addr: 127.0.0.1:0, grpc_addr: none}\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(a, "state")
	env := append(os.Environ(), "SPEARLET_CONFIG=", client.EnvStateDir+"=", client.EnvAddr+"=")

	printed := exec.CommandContext(testCtx(t), binary, "serve", "--config", config, "--print-config")
	printed.Dir, printed.Env = b, env
	out, err := printed.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "state_dir: "+state+"\n") {
		t.Fatalf("--print-config from %s: %v\n%s", b, err, out)
	}

	serve := exec.Command(binary, "serve", "--config", config)
	serve.Dir, serve.Env = b, env
	var log bytes.Buffer
	serve.Stderr = &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = serve.Wait(); close(exited) }()
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		<-exited
		if exitErr != nil {
			t.Errorf("serve: %v\n%s", exitErr, log.String())
		}
	}()
	eventually(t, "the API socket and token in "+state, func() bool {
		select {
		case <-exited:
			t.Fatalf("serve exited early: %v\n%s", exitErr, log.String())
		default:
		}
		sock, err := os.Stat(filepath.Join(state, api.SocketName))
		_, tokErr := os.Stat(filepath.Join(state, api.TokenName))
		return err == nil && sock.Mode().Type() == fs.ModeSocket && tokErr == nil
	})
	cli := exec.CommandContext(testCtx(t), binary, "instances", "--state-dir", state)
	cli.Env = env
	if out, err := cli.CombinedOutput(); err != nil {
		t.Errorf("instances over %s: %v\n%s", filepath.Join(state, api.SocketName), err, out)
	}
	if left, err := os.ReadDir(b); err != nil || len(left) != 0 {
		t.Errorf("the working directory holds %v (%v), want nothing", left, err)
	}
}
