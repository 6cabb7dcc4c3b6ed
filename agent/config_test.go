package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/spear-go/spear"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	echo, ok := cfg.function("echo")
	if !ok || echo.Runtime != "process" || echo.Command != SelfCommand || len(echo.Args) != 1 || echo.Args[0] != "worker" {
		t.Errorf("echo = %+v, want a process function running %q worker", echo, SelfCommand)
	}
	w, ok := cfg.function("wasm-echo")
	if !ok || w.Runtime != "wasm" || w.Wasm != EmbeddedWasmEcho {
		t.Errorf("wasm-echo = %+v, want the embedded wasm module", w)
	}
	d := cfg.withDefaults()
	if d.API.HTTPAddr != DefaultHTTPAddr || d.API.GRPCAddr != DefaultGRPCAddr {
		t.Errorf("api = %+v", d.API)
	}
	spec, err := buildSpec(w, spear.Wasm, "/self")
	if err != nil || len(spec.WasmBytes) == 0 || spec.WasmFile != "" {
		t.Errorf("wasm spec: %d module bytes, file %q, err %v", len(spec.WasmBytes), spec.WasmFile, err)
	}
	spec, err = buildSpec(echo, spear.Process, "/self")
	if err != nil || spec.Command != "/self" {
		t.Errorf("process spec command %q, err %v; want /self", spec.Command, err)
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
api: {http_addr: "0.0.0.0:9000"}
invoke_timeout: 5s
functions:
  - name: fn
    runtime: process
    command: /bin/fn
    env: {B: "2", A: "1"}
    min_instances: 2
    channel: {type: tcp, request_timeout: 1s}
    restart: {policy: never, initial_backoff: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.HTTPAddr != "0.0.0.0:9000" || cfg.InvokeTimeout.D() != 5*time.Second {
		t.Errorf("cfg = %+v", cfg)
	}
	fn := cfg.withDefaults().Functions[0]
	if fn.MaxInstances != DefaultMaxInstances || fn.MaxConcurrency != DefaultMaxConcurrency || fn.Restart.Policy != RestartNever ||
		fn.Restart.MaxBackoff.D() != DefaultMaxBackoff {
		t.Errorf("function defaults = %+v", fn)
	}
	spec, err := buildSpec(fn, spear.Process, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Env, ","); got != "A=1,B=2" {
		t.Errorf("env = %q, want sorted A=1,B=2", got)
	}
	if spec.Channel == nil || spec.Channel.Type != "tcp" || spec.Channel.RequestTimeout != time.Second {
		t.Errorf("channel = %+v", spec.Channel)
	}
	// max_instances follows a larger min_instances when unset.
	if got := (FunctionConfig{MinInstances: 7}).withDefaults().MaxInstances; got != 7 {
		t.Errorf("max_instances = %d, want 7", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	fn := "functions:\n  - {name: fn, runtime: process, command: x, %s}\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "bogus: 1\n", "bogus"},
		{"bad duration", "invoke_timeout: 5\n", "duration"},
		{"bad duration text", "invoke_timeout: soon\n", "soon"},
		{"no name", "functions: [{runtime: process, command: x}]\n", "name is required"},
		{"bad name", "functions: [{name: Bad_Name, runtime: process, command: x}]\n", "Bad_Name"},
		{"long name", "functions: [{name: " + strings.Repeat("a", MaxFunctionName+1) + ", runtime: process, command: x}]\n", "limit"},
		{"duplicate", "functions: [{name: a, runtime: process, command: x}, {name: a, runtime: process, command: x}]\n", "duplicate"},
		{"bad runtime", "functions: [{name: a, runtime: docker}]\n", "docker"},
		{"process without command", "functions: [{name: a, runtime: process}]\n", "command"},
		{"wasm without module", "functions: [{name: a, runtime: wasm}]\n", "wasm module"},
		{"kubernetes without image", "functions: [{name: a, runtime: kubernetes}]\n", "image"},
		{"min above max", strings.Replace(fn, "%s", "min_instances: 3, max_instances: 2", 1), "min_instances 3 is above max_instances 2"},
		{"negative", strings.Replace(fn, "%s", "max_concurrency: -1", 1), "negative"},
		{"bad channel", strings.Replace(fn, "%s", "channel: {type: pigeon}", 1), "pigeon"},
		{"bad policy", strings.Replace(fn, "%s", "restart: {policy: always}", 1), "always"},
		{"tiny heartbeat", strings.Replace(fn, "%s", "channel: {heartbeat_interval: 1ms}", 1), "under 10ms"},
		{"payload limit", "max_payload: 999999999\n", "max_payload"},
		{"not yaml", "functions: [\n", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if !errors.Is(err, spear.ErrInvalidConfig) {
				t.Fatalf("err = %v, want one matching spear.ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	if cfg, err := LoadConfig(""); err != nil || len(cfg.Functions) != 2 {
		t.Errorf("LoadConfig(\"\") = %d functions, %v; want the default's 2", len(cfg.Functions), err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("functions: [{name: a, runtime: wasm, wasm: a.wasm}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil || len(cfg.Functions) != 1 || cfg.Functions[0].Name != "a" {
		t.Errorf("LoadConfig = %+v, %v", cfg, err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, spear.ErrConfig) {
		t.Errorf("missing file: err = %v, want spear.ErrConfig", err)
	}
}

func TestApplyEnv(t *testing.T) {
	cfg := DefaultConfig()
	env := map[string]string{
		"SPEARLET_HTTP_ADDR":      "127.0.0.1:1",
		"SPEARLET_API_GRPC_ADDR":  "127.0.0.1:2",
		"SPEARLET_GRPC_ADDR":      "0.0.0.0:7070",
		"SPEARLET_TCP_ADDR":       "0.0.0.0:7071",
		"SPEARLET_ADVERTISE_GRPC": "10.0.0.1:7070",
		"SPEARLET_ADVERTISE_TCP":  "10.0.0.1:7071",
		"SPEARLET_SOCKET_DIR":     "/run/spear",
		"SPEARLET_KUBECONFIG":     "/kube",
		"SPEARLET_KUBE_NAMESPACE": "fns",
		"SPEARLET_NODE_NAME":      "node-1",
		"SPEARLET_WASM_CACHE_DIR": "/var/cache/spearlet/wasm",
	}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := Config{
		API: APIConfig{HTTPAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2"},
		Channels: ChannelsConfig{SocketDir: "/run/spear", TCPAddr: "0.0.0.0:7071", GRPCAddr: "0.0.0.0:7070",
			AdvertiseTCP: "10.0.0.1:7071", AdvertiseGRPC: "10.0.0.1:7070"},
		Kubernetes: KubernetesConfig{Kubeconfig: "/kube", Namespace: "fns", NodeName: "node-1"},
		Wasm:       WasmConfig{CacheDir: "/var/cache/spearlet/wasm"},
	}
	if cfg.API != want.API || cfg.Channels != want.Channels || cfg.Kubernetes != want.Kubernetes || cfg.Wasm != want.Wasm {
		t.Errorf("after ApplyEnv: %+v %+v %+v %+v", cfg.API, cfg.Channels, cfg.Kubernetes, cfg.Wasm)
	}
	if len(EnvVars()) != len(env) {
		t.Errorf("EnvVars() = %v; the test covers %d", EnvVars(), len(env))
	}
}

// TestDeployConfigMap parses the example config shipped with the
// Kubernetes manifests, so that the two stay in step.
func TestDeployConfigMap(t *testing.T) {
	b, err := os.ReadFile("../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Skipf("no manifest: %v", err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("deploy/kubernetes/configmap.yaml: %v", err)
	}
	if len(cfg.Functions) == 0 || cfg.Functions[0].Runtime != "kubernetes" {
		t.Errorf("functions = %+v", cfg.Functions)
	}
}
