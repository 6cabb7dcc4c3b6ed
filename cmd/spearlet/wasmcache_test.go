package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A read-only root filesystem (as in the DaemonSet) leaves the user's
// cache directory uncreatable: the daemon then compiles wasm modules in
// memory instead of failing, and --wasm-cache-dir puts the cache where it
// can be written.
func TestWasmCacheDir(t *testing.T) {
	// Nothing can be created below a regular file, not even by root.
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_CACHE_HOME=" + blocked, "HOME=" + blocked}

	d := startDaemonEnv(t, env)
	if out, err := d.cli(t, "", "invoke", "wasm-echo", "hi"); err != nil || !strings.HasSuffix(out, "|hi") {
		t.Errorf("wasm-echo without a writable cache: %q, %v", out, err)
	}
	if !strings.Contains(d.logText(), "no wasm compilation cache") {
		t.Error("the daemon did not warn that it has no compilation cache")
	}

	cache := t.TempDir()
	d = startDaemonEnv(t, env, "--wasm-cache-dir", cache)
	if out, err := d.cli(t, "", "invoke", "wasm-echo", "hi"); err != nil || !strings.HasSuffix(out, "|hi") {
		t.Errorf("wasm-echo with --wasm-cache-dir: %q, %v", out, err)
	}
	if entries, _ := os.ReadDir(cache); len(entries) == 0 {
		t.Errorf("nothing cached in %s", cache)
	}

	// A directory given explicitly that cannot be used is an error.
	cmd := execCommand(t, "serve", "--api-http-addr", "127.0.0.1:0", "--api-grpc-addr", "127.0.0.1:0",
		"--channels-socket-dir", t.TempDir(), "--state-dir", filepath.Join(t.TempDir(), "state"), "--wasm-cache-dir", filepath.Join(blocked, "wasm"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "wasm compilation cache") {
		t.Errorf("serve with an unusable --wasm-cache-dir: %v\n%s", err, out)
	}
}
