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
		"SPEARLET_STATE_DIR":      "/var/lib/spear-test",
	}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := Config{
		API: APIConfig{HTTPAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2"},
		Channels: ChannelsConfig{SocketDir: "/run/spear", TCPAddr: "0.0.0.0:7071", GRPCAddr: "0.0.0.0:7070",
			AdvertiseTCP: "10.0.0.1:7071", AdvertiseGRPC: "10.0.0.1:7070"},
		Kubernetes: KubernetesConfig{Kubeconfig: "/kube", Namespace: "fns", NodeName: "node-1"},
		Wasm:       WasmConfig{CacheDir: "/var/cache/spearlet/wasm"},
		StateDir:   "/var/lib/spear-test",
	}
	if cfg.API != want.API || cfg.Channels != want.Channels || cfg.Kubernetes != want.Kubernetes || cfg.Wasm != want.Wasm || cfg.StateDir != want.StateDir {
		t.Errorf("after ApplyEnv: %+v %+v %+v %+v %q", cfg.API, cfg.Channels, cfg.Kubernetes, cfg.Wasm, cfg.StateDir)
	}
	if len(EnvVars()) != len(env) {
		t.Errorf("EnvVars() = %v; the test covers %d", EnvVars(), len(env))
	}
}
