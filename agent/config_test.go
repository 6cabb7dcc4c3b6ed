package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime/process"
)

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
    stop_grace: 2s
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
	// The runtime's fields went to its spec, the others to the settings.
	spec, ok := fn.Spec.(process.Spec)
	if !ok || spec.Command != "/bin/fn" || strings.Join(spec.Env.List(), ",") != "A=1,B=2" {
		t.Errorf("spec = %#v", fn.Spec)
	}
	set := fn.settings()
	if set.Function != "fn" || set.StopGrace != 2*time.Second || set.Channel == nil || set.Channel.Type != "tcp" || set.Channel.RequestTimeout != time.Second {
		t.Errorf("settings = %+v (channel %+v)", set, set.Channel)
	}
	// max_instances follows a larger min_instances when unset.
	if got := (FunctionConfig{MinInstances: 7}).withDefaults().MaxInstances; got != 7 {
		t.Errorf("max_instances = %d, want 7", got)
	}
}

// TestConfigRoundTrip prints a configuration as --print-config does and
// parses it back: the runtime's fields travel in the function's mapping.
func TestConfigRoundTrip(t *testing.T) {
	in, err := ParseConfig([]byte(`
functions:
  - {name: a, runtime: process, command: /bin/a, args: [x], max_instances: 3}
  - {name: b, runtime: agent-fake, image: img}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(in.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"name":"a","runtime":"process"`) || !strings.Contains(string(b), `"command":"/bin/a","args":["x"]`) {
		t.Errorf("printed %s", b)
	}
	out, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("parse printed config: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(out, in.WithDefaults()) {
		t.Errorf("round trip:\n got %#v\nwant %#v", out, in.WithDefaults())
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
		{"bad runtime", "functions: [{name: a, runtime: docker}]\n", `runtime "docker": want one of process,`},
		{"runtime not built in", "functions: [{name: a, runtime: wasm}]\n", `runtime "wasm" is not built into this program`},
		{"process without command", "functions: [{name: a, runtime: process}]\n", "functions[0] (a): command: required"},
		{"other runtime without image", "functions: [{name: a, runtime: agent-fake}]\n", "functions[0] (a): image: required"},
		{"other runtime's field", "functions: [{name: a, runtime: agent-fake, image: x, command: y}]\n", `function "a": command: unknown field: the agent-fake runtime has no such setting`},
		{"runtime field of the wrong type", "functions: [{name: a, runtime: process, command: x, args: 7}]\n", "args: number is not a []string"},
		{"bad env", strings.Replace(fn, "%s", `env: {"A=B": x}`, 1), `env: variable name "A=B" is not valid`},
		{"min above max", strings.Replace(fn, "%s", "min_instances: 3, max_instances: 2", 1), "min_instances 3 is above max_instances 2"},
		{"negative", strings.Replace(fn, "%s", "max_concurrency: -1", 1), "negative"},
		{"bad channel", strings.Replace(fn, "%s", "channel: {type: pigeon}", 1), "pigeon"},
		{"bad policy", strings.Replace(fn, "%s", "restart: {policy: always}", 1), "always"},
		{"tiny heartbeat", strings.Replace(fn, "%s", "channel: {heartbeat_interval: 1ms}", 1), "under 10ms"},
		{"payload limit", "max_payload: 999999999\n", "max_payload"},
		{"bad balancer", strings.Replace(fn, "%s", "balancer: random", 1), `balancer: unknown balancer "random"`},
		{"connections over the cap", strings.Replace(fn, "%s", "connections: 5", 1), "connections 5 is above channel.max_connections 4"},
		{"connections word", strings.Replace(fn, "%s", "connections: many", 1), `connections "many": want a number or auto`},
		{"load factor", strings.Replace(fn, "%s", "balancer: hash, hash_load_factor: 0.5", 1), "hash_load_factor 0.5"},
		{"panic window", strings.Replace(fn, "%s", "stable_window: 5s, panic_window: 10s", 1), "panic_window 10s is longer than stable_window 5s"},
		{"panic threshold", strings.Replace(fn, "%s", "target_concurrency: 4, panic_threshold: 1", 1), "panic_threshold 1"},
		{"max queue", strings.Replace(fn, "%s", "max_queue: -1", 1), "max_queue may not be negative"},
		{"ejected percent", strings.Replace(fn, "%s", "outlier: {max_ejected_percent: 120}", 1), "max_ejected_percent is 0 to 100"},
		{"latency factor", strings.Replace(fn, "%s", "outlier: {latency_factor: 1}", 1), "outlier.latency_factor 1"},
		{"negative idle timeout", strings.Replace(fn, "%s", "idle_timeout: -1s", 1), "negative"},
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

// The pool settings parse, connections as a count or auto, and round-trip.
func TestPoolSettings(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
functions:
  - name: a
    runtime: process
    command: x
    balancer: hash
    hash_load_factor: 1.5
    connections: auto
    idle_timeout: 30s
    max_queue: 10
    target_concurrency: 4
    outlier: {consecutive_errors: 2, latency_factor: 5}
  - name: b
    runtime: process
    command: x
    connections: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.WithDefaults().Functions[0], cfg.WithDefaults().Functions[1]
	if a.Balancer != "hash" || a.HashLoadFactor != 1.5 || !a.Connections.Auto || a.IdleTimeout.D() != 30*time.Second ||
		a.MaxQueue != 10 || a.TargetConcurrency != 4 || a.Outlier.ConsecutiveErrors != 2 || a.Outlier.LatencyFactor != 5 ||
		a.StableWindow.D() != DefaultStableWindow || a.PanicWindow.D() != DefaultPanicWindow || a.Outlier.Probation != 3 {
		t.Errorf("function a: %+v", a)
	}
	if b.Connections != (Connections{N: 3}) || b.Balancer != "least-inflight" || b.MaxQueue != DefaultMaxQueue {
		t.Errorf("function b: %+v", b)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseConfig(out)
	if err != nil || !again.Functions[0].Connections.Auto || again.Functions[1].Connections.N != 3 {
		t.Errorf("round trip: %s: %+v, %v", out, again.Functions, err)
	}
}

func TestLoadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("functions: [{name: a, runtime: process, command: a}]\n"), 0o600); err != nil {
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
	var cfg Config
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
