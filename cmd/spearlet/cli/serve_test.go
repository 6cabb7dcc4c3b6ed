package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/checkout"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
)

func TestDefaultConfig(t *testing.T) {
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Functions) != 2 {
		t.Fatalf("functions = %+v, want echo and wasm-echo", cfg.Functions)
	}
	echo, ok := cfg.Functions[0].Spec.(process.Spec)
	if cfg.Functions[0].Name != "echo" || !ok || echo.Command != process.WorkerCommand || len(echo.Args) != 0 {
		t.Errorf("echo = %+v, want a process function running %q", cfg.Functions[0], process.WorkerCommand)
	}
	if !usesWorker(cfg) {
		t.Error("the default config does not use the small worker")
	}
	w, ok := cfg.Functions[1].Spec.(wasm.Spec)
	if cfg.Functions[1].Name != "wasm-echo" || !ok || w.Module != "@wasmecho" {
		t.Errorf("wasm-echo = %+v, want the built-in example module", cfg.Functions[1])
	}
	for _, fn := range cfg.Functions {
		if rt, _ := spear.ParseRuntimeType(fn.Runtime); runtimes[rt] == nil {
			t.Errorf("function %s: no %s runtime in this spearlet", fn.Name, rt)
		}
	}
}

// TestNoKubernetesBuild checks that -tags nokubernetes leaves client-go
// out of spearlet, and that the agent never needs it.
func TestNoKubernetesBuild(t *testing.T) {
	deps := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command("go", append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", args, err)
		}
		var k8s []string
		for _, p := range strings.Fields(string(out)) {
			if strings.HasPrefix(p, "k8s.io/") {
				k8s = append(k8s, p)
			}
		}
		return k8s
	}
	const spearlet = "github.com/spear-go/spear/cmd/spearlet"
	if got := deps(spearlet); !slices.Contains(got, "k8s.io/client-go/kubernetes") {
		t.Errorf("the default build has no client-go: %v", got)
	}
	if got := deps("-tags", "nokubernetes", spearlet); len(got) > 0 {
		t.Errorf("spearlet built with -tags nokubernetes still imports %v", got)
	}
	if got := deps("github.com/spear-go/spear/agent"); len(got) > 0 {
		t.Errorf("package agent imports %v", got)
	}
}

// In a checkout the small worker is built into the cache directory, and a
// second build reuses Go's build cache.
func TestBuildWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache))) // keep Go's build cache
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	path, err := buildWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode()&0o100 == 0 {
		t.Fatalf("worker %s: %v %v", path, st, err)
	}
	// Each checkout has its worker of its own.
	cwd, _ := os.Getwd()
	cache, _ := os.UserCacheDir()
	if want := workerPath(cache, checkout.Root(cwd)); path != want {
		t.Errorf("worker built at %s, want %s", path, want)
	}
	if a, b := workerPath(cache, "/src/a/spear"), workerPath(cache, "/src/b/spear"); filepath.Dir(a) == filepath.Dir(b) {
		t.Errorf("two checkouts share the worker directory %s", filepath.Dir(a))
	}
	cmd := workerCommand(context.Background(), agent.Config{Functions: []agent.FunctionConfig{{Runtime: "process", Spec: process.Spec{Command: process.WorkerCommand}}}}, slog.New(slog.DiscardHandler))
	if len(cmd) != 1 || cmd[0] != path {
		t.Errorf("workerCommand = %q, want [%s]", cmd, path)
	}
	// Without a function using it nothing is built; a function a reload
	// adds runs this binary's worker subcommand.
	self, _ := os.Executable()
	if cmd := workerCommand(context.Background(), agent.Config{}, slog.New(slog.DiscardHandler)); !slices.Equal(cmd, []string{self, "worker"}) {
		t.Errorf("workerCommand without a function using it = %q, want [%s worker]", cmd, self)
	}
}

// Issue 7: a wasm module file that does not exist is refused when the
// configuration loads, naming the field and its line; a relative one is
// found next to the configuration file.
func TestWasmFileCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spearlet.yaml")
	if err := os.WriteFile(path, []byte("functions:\n  - name: w\n    runtime: wasm\n    wasm: missing.wasm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	want := path + ":4:11: functions[0].wasm: " + filepath.Join(dir, "missing.wasm") + ": no such file"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "missing.wasm"), wasmecho.Module, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Functions[0].Spec.(wasm.Spec); w.Module != filepath.Join(dir, "missing.wasm") {
		t.Errorf("module = %q", w.Module)
	}
}

// serve resolves a relative path from the config file against the
// file's directory, and one from the environment or a flag against the
// working directory; --print-config shows them absolute.
func TestServeResolvesPaths(t *testing.T) {
	a := t.TempDir()
	path := filepath.Join(a, "spearlet.yaml")
	if err := os.WriteFile(path, []byte("state_dir: state\nwasm: {cache_dir: cache}\nchannels: {socket_dir: sockets}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := t.TempDir()
	t.Chdir(b)
	t.Setenv("SPEARLET_SOCKET_DIR", "env-sockets")
	t.Setenv("SPEARLET_API_TOKEN_FILE", "env-token")
	code, out, stderr := mainCLI(t, "serve", "-c", path, "--print-config=json", "--api-socket", "flag.sock")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var cfg struct {
		StateDir string `json:"state_dir"`
		API      struct {
			Socket    string `json:"socket"`
			TokenFile string `json:"token_file"`
		} `json:"api"`
		Channels struct {
			SocketDir string `json:"socket_dir"`
		} `json:"channels"`
		Wasm struct {
			CacheDir string `json:"cache_dir"`
		} `json:"wasm"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, c := range []struct{ name, got, want string }{
		{"state_dir", cfg.StateDir, filepath.Join(a, "state")},
		{"wasm.cache_dir", cfg.Wasm.CacheDir, filepath.Join(a, "cache")},
		{"channels.socket_dir (environment over the file)", cfg.Channels.SocketDir, filepath.Join(b, "env-sockets")},
		{"api.token_file (environment)", cfg.API.TokenFile, filepath.Join(b, "env-token")},
		{"api.socket (flag)", cfg.API.Socket, filepath.Join(b, "flag.sock")},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	for format, want := range map[string]string{"text": `level=INFO msg=hi k=v`, "json": `"level":"INFO","msg":"hi","k":"v"`} {
		var b strings.Builder
		log, err := newLogger(&b, format, slog.LevelInfo)
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("quiet")
		log.Info("hi", "k", "v")
		if !strings.Contains(b.String(), want) || strings.Contains(b.String(), "quiet") {
			t.Errorf("--log-format %s wrote %q, want %q and nothing below info", format, b.String(), want)
		}
	}
	if _, err := newLogger(&strings.Builder{}, "xml", slog.LevelInfo); err == nil || !strings.Contains(err.Error(), "want text or json") {
		t.Errorf("--log-format xml: %v", err)
	}
}
