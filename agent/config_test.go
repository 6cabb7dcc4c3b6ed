package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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
		{"bad duration", "invoke_timeout: [5]\n", "invoke_timeout: want a duration such as 5s"},
		{"bad duration text", "invoke_timeout: soon\n", `line 1, column 17: invoke_timeout: "soon" is not a duration`},
		{"no name", "functions: [{runtime: process, command: x}]\n", "functions[0].name: required"},
		{"bad name", "functions: [{name: Bad_Name, runtime: process, command: x}]\n", "Bad_Name"},
		{"long name", "functions: [{name: " + strings.Repeat("a", MaxFunctionName+1) + ", runtime: process, command: x}]\n", "limit"},
		{"duplicate", "functions: [{name: a, runtime: process, command: x}, {name: a, runtime: process, command: x}]\n", "duplicate"},
		{"bad runtime", "functions: [{name: a, runtime: docker}]\n", `functions[0].runtime: "docker": want one of process,`},
		{"misspelt runtime", "functions: [{name: a, runtime: proces}]\n", `"proces": want one of process, agent-fake, toy; did you mean "process"?`},
		{"runtime not built in", "functions: [{name: a, runtime: wasm}]\n", `runtime "wasm" is not built into this program`},
		{"process without command", "functions: [{name: a, runtime: process}]\n", "line 1, column 13: functions[0].command: required for a process function"},
		{"other runtime without image", "functions: [{name: a, runtime: agent-fake}]\n", "functions[0].image: required"},
		{"other runtime's field", "functions: [{name: a, runtime: agent-fake, image: x, command: y}]\n", `line 1, column 54: functions[0].command: unknown field: the agent-fake runtime has no such setting (process functions have it)`},
		{"misspelt runtime field", "functions: [{name: a, runtime: process, comand: y}]\n", `functions[0].comand: unknown field; did you mean "command"?`},
		{"misspelt common field", "functions: [{name: a, runtime: process, command: y, max_instance: 2}]\n", `functions[0].max_instance: unknown field; did you mean "max_instances"?`},
		{"misspelt top-level field", "function: []\n", `line 1, column 1: function: unknown field; did you mean "functions"?`},
		{"runtime field of the wrong type", "functions: [{name: a, runtime: process, command: x, args: 7}]\n", "functions[0].args: number is not a []string"},
		{"bad env", strings.Replace(fn, "%s", `env: {"A=B": x}`, 1), `env: variable name "A=B" is not valid`},
		{"min above max", strings.Replace(fn, "%s", "min_instances: 3, max_instances: 2", 1), "functions[0].min_instances: 3 is above max_instances 2"},
		{"negative", strings.Replace(fn, "%s", "max_concurrency: -1", 1), "negative"},
		{"bad channel", strings.Replace(fn, "%s", "channel: {type: pigeon}", 1), "pigeon"},
		{"bad policy", strings.Replace(fn, "%s", "restart: {policy: always}", 1), "always"},
		{"tiny heartbeat", strings.Replace(fn, "%s", "channel: {heartbeat_interval: 1ms}", 1), "under 10ms"},
		{"payload limit", "max_payload: 999999999\n", "max_payload"},
		{"not yaml", "functions: [\n", "line 1: YAML syntax"},
		{"duplicate key", "invoke_timeout: 1s\ninvoke_timeout: 2s\n", "line 2, column 1: invoke_timeout: duplicate key (first set at line 1)"},
		// Issue 7: a channel type the runtime cannot use is refused at load.
		{"memory channel for a process", strings.Replace(fn, "%s", "channel: {type: memory}", 1), "functions[0].channel.type: memory: a process function's channel is unix, tcp or grpc"},
		{"misspelt channel type", strings.Replace(fn, "%s", "channel: {type: unx}", 1), `"unx": want grpc, memory, tcp or unix; did you mean "unix"?`},
		{"bad balancer", strings.Replace(fn, "%s", "balancer: random", 1), `functions[0].balancer: unknown balancer "random"`},
		{"connections over the cap", strings.Replace(fn, "%s", "connections: 5", 1), "functions[0].connections: 5 is above channel.max_connections 4"},
		{"connections word", strings.Replace(fn, "%s", "connections: many", 1), `functions[0].connections: connections "many": want a number or auto`},
		{"load factor", strings.Replace(fn, "%s", "balancer: hash, hash_load_factor: 0.5", 1), "functions[0].hash_load_factor: 0.5: want more than 1"},
		{"panic window", strings.Replace(fn, "%s", "stable_window: 5s, panic_window: 10s", 1), "functions[0].panic_window: 10s is longer than stable_window 5s"},
		{"panic threshold", strings.Replace(fn, "%s", "target_concurrency: 4, panic_threshold: 1", 1), "functions[0].panic_threshold: 1: want more than 1"},
		{"max queue", strings.Replace(fn, "%s", "max_queue: -1", 1), "functions[0].max_queue: may not be negative"},
		{"ejected percent", strings.Replace(fn, "%s", "outlier: {max_ejected_percent: 120}", 1), "functions[0].outlier.max_ejected_percent: 120: want 0 to 100"},
		{"latency factor", strings.Replace(fn, "%s", "outlier: {latency_factor: 1}", 1), "functions[0].outlier.latency_factor: 1: want more than 1"},
		{"negative idle timeout", strings.Replace(fn, "%s", "idle_timeout: -1s", 1), "functions[0].idle_timeout: may not be negative"},
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
		"SPEARLET_STATE_DIR":      "/var/lib/spear",
		"SPEARLET_API_SOCKET":     "/run/spear.sock",
		"SPEARLET_API_TOKEN_FILE": "/etc/spear/token",
	}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := Config{
		StateDir: "/var/lib/spear",
		API:      APIConfig{HTTPAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2", Socket: "/run/spear.sock", TokenFile: "/etc/spear/token"},
		Channels: ChannelsConfig{SocketDir: "/run/spear", TCPAddr: "0.0.0.0:7071", GRPCAddr: "0.0.0.0:7070",
			AdvertiseTCP: "10.0.0.1:7071", AdvertiseGRPC: "10.0.0.1:7070"},
		Kubernetes: KubernetesConfig{Kubeconfig: "/kube", Namespace: "fns", NodeName: "node-1"},
		Wasm:       WasmConfig{CacheDir: "/var/cache/spearlet/wasm"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("after ApplyEnv: %+v, want %+v", cfg, want)
	}
	if len(EnvVars()) != len(env) {
		t.Errorf("EnvVars() = %v; the test covers %d", EnvVars(), len(env))
	}
}

// A configuration file's errors name the file, line, column and YAML path
// of each problem, all at once and in the file's order, with a suggestion
// for a misspelt field.
func TestLoadConfigPositions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spearlet.yaml")
	src := `invoke_timeout: soon
functions:
  - name: a
    runtime: process
    command: /bin/a
  - name: b
    runtime: process
    command: /bin/b
    channel: {type: memory}
  - name: c
    runtime: process
    comand: /bin/c
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	want := path + `:1:17: invoke_timeout: "soon" is not a duration: write a number and a unit (ms, s, m, h), such as 5s, 250ms or 2m, or a number of seconds
` + path + `:9:21: functions[1].channel.type: memory: a process function's channel is unix, tcp or grpc
` + path + `:12:5: functions[2].comand: unknown field; did you mean "command"?`
	if err == nil || err.Error() != want {
		t.Fatalf("err:\n%v\nwant:\n%s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != path || ce.Line != 1 || ce.Column != 17 || ce.Path != "invoke_timeout" {
		t.Errorf("first error = %+v", ce)
	}
	// Once the file decodes, only the validation's problem is left.
	src = strings.Replace(strings.Replace(src, "soon", "5", 1), "comand", "command", 1)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfig(path)
	want = path + ":9:21: functions[1].channel.type: memory: a process function's channel is unix, tcp or grpc"
	if err == nil || err.Error() != want {
		t.Fatalf("err:\n%v\nwant:\n%s", err, want)
	}
}

// Issue 7: a relative command or dir is resolved against the config
// file's directory, not the agent's working directory, which is also the
// default dir.
func TestLoadConfigResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spearlet.yaml")
	src := `functions:
  - {name: rel, runtime: process, command: ./bin/fn, dir: work}
  - {name: bare, runtime: process, command: python3, args: [main.py]}
  - {name: abs, runtime: process, command: /usr/bin/env, dir: /tmp}
  - {name: self, runtime: process, command: "@self"}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // the agent runs elsewhere
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []process.Spec{
		{Command: filepath.Join(dir, "bin", "fn"), Dir: filepath.Join(dir, "work")},
		{Command: "python3", Args: []string{"main.py"}, Dir: dir},
		{Command: "/usr/bin/env", Dir: "/tmp"},
		{Command: process.SelfCommand, Dir: dir},
	} {
		if got := cfg.Functions[i].Spec; !reflect.DeepEqual(got, want) {
			t.Errorf("functions[%d] = %+v, want %+v", i, got, want)
		}
	}
	// Bytes have no directory: paths stay relative to the working one.
	cfg, err = ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Functions[0].Spec.(process.Spec); got.Command != "./bin/fn" || got.Dir != "work" {
		t.Errorf("parsed from bytes: %+v", got)
	}
}

// The agent's own relative paths are the config file's directory's too,
// as its functions' are: state_dir: state in dir A, loaded from dir B, is
// A/state. Absolute paths, empty ones (the defaults) and api.socket: none
// stay as written, and bytes, which have no directory, keep them
// relative.
func TestLoadConfigResolvesAgentPaths(t *testing.T) {
	a := t.TempDir()
	path := filepath.Join(a, "spearlet.yaml")
	src := `state_dir: state
api:
  socket: run/api.sock
  token_file: secrets/token
  tls: {cert_file: tls/api.pem, key_file: tls/api-key.pem, client_ca_file: /etc/spear/ca.pem}
channels:
  socket_dir: sockets
  tls: {mode: server, cert_file: tls/ch.pem, key_file: tls/ch-key.pem, ca_file: ../ca.pem}
kubernetes: {kubeconfig: kube/config}
wasm: {cache_dir: cache}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // B: the agent runs elsewhere
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := cfg
	want.StateDir = filepath.Join(a, "state")
	want.API.Socket = filepath.Join(a, "run", "api.sock")
	want.API.TokenFile = filepath.Join(a, "secrets", "token")
	want.API.TLS = APITLSConfig{CertFile: filepath.Join(a, "tls", "api.pem"), KeyFile: filepath.Join(a, "tls", "api-key.pem"), ClientCAFile: "/etc/spear/ca.pem"}
	want.Channels.SocketDir = filepath.Join(a, "sockets")
	want.Channels.TLS = ChannelTLSConfig{Mode: TLSServer, CertFile: filepath.Join(a, "tls", "ch.pem"), KeyFile: filepath.Join(a, "tls", "ch-key.pem"), CAFile: filepath.Join(filepath.Dir(a), "ca.pem")}
	want.Kubernetes.Kubeconfig = filepath.Join(a, "kube", "config")
	want.Wasm.CacheDir = filepath.Join(a, "cache")
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("LoadConfig =\n%+v\nwant\n%+v", cfg, want)
	}
	if got := pathSettings(); len(got) != 12 {
		t.Errorf("this test sets 12 path settings; the Config has %d: %v", len(got), got)
	}

	if err := os.WriteFile(path, []byte("api: {socket: none}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := LoadConfig(path); err != nil || cfg.API.Socket != "none" || cfg.StateDir != "" {
		t.Errorf("socket none, no state_dir: %+v, %v", cfg.API, err)
	}
	if cfg, err := ParseConfig([]byte(src)); err != nil || cfg.StateDir != "state" || cfg.Wasm.CacheDir != "cache" {
		t.Errorf("parsed from bytes: state_dir %q, cache_dir %q, %v", cfg.StateDir, cfg.Wasm.CacheDir, err)
	}
}

// Every setting named as a file or directory is tagged spear:"path", so
// that ResolvePaths resolves it: a new one cannot be forgotten.
func TestPathSettingsTagged(t *testing.T) {
	for name, tagged := range stringSettings(reflect.TypeFor[Config](), "") {
		if pathLike.MatchString(name) && !tagged {
			t.Errorf("%s looks like a path but is not tagged spear:\"path\"", name)
		}
	}
}

// pathLike matches the names of settings that hold a path.
var pathLike = regexp.MustCompile(`(_file|_dir|_path|socket|kubeconfig)$`)

// pathSettings lists the YAML paths of the settings tagged spear:"path".
func pathSettings() []string {
	var out []string
	for name, tagged := range stringSettings(reflect.TypeFor[Config](), "") {
		if tagged {
			out = append(out, name)
		}
	}
	return out
}

// stringSettings yields the YAML path of each string field of typ, and
// of the structs in it, and whether it is tagged spear:"path".
func stringSettings(typ reflect.Type, at string) iter.Seq2[string, bool] {
	return func(yield func(string, bool) bool) {
		for f := range typ.Fields() {
			name := jsonName(f)
			if at != "" {
				name = at + "." + name
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				for n, tagged := range stringSettings(f.Type, name) {
					if !yield(n, tagged) {
						return
					}
				}
			case reflect.String:
				kind, _, _ := strings.Cut(f.Tag.Get("spear"), ",")
				if !yield(name, kind == "path") {
					return
				}
			}
		}
	}
}

// A bare number is seconds, in the configuration and in ParseDuration.
func TestDurations(t *testing.T) {
	cfg, err := ParseConfig([]byte("invoke_timeout: 5\nshutdown_grace: \"0.25\"\n"))
	if err != nil || cfg.InvokeTimeout.D() != 5*time.Second || cfg.ShutdownGrace.D() != 250*time.Millisecond {
		t.Errorf("cfg = %+v, %v", cfg, err)
	}
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "1.5": 1500 * time.Millisecond, "250ms": 250 * time.Millisecond, " 2m ": 2 * time.Minute, "0": 0} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "5x", "inf", "NaN", "1e300", "0x10"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	if _, err := ParseDuration("soon"); err == nil || !strings.Contains(err.Error(), "such as 5s") {
		t.Errorf("ParseDuration error %v does not say how to write one", err)
	}
}

// FuzzParseConfig checks that no configuration panics the loader, and
// that every problem it finds is a *ConfigError matching
// spear.ErrInvalidConfig.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"functions: [{name: a, runtime: process, command: x, env: {A: 1}}]\n",
		"invoke_timeout: soon\nfunctions:\n  - {name: a, runtime: agent-fake, image: i, comand: x}\n",
		"functions:\n  - &f {name: a, runtime: process, command: x}\n  - {<<: *f, name: b}\n",
		"channels: {heartbeat_interval: 1ms}\nmax_payload: -1\n",
		"functions: [{name: a, runtime: process, command: x, channel: {type: memory}, restart: {policy: allways}}]\n",
		"process: {cgroups: maybe, user_range: 5-1}\nfunctions: [{name: a, runtime: process, command: x, limits: {memory: lots, cpu: [1], pids: x, disk: 1}, env: {A: [1]}}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseConfig(b)
		for _, e := range flatten(err) {
			if _, ok := errors.AsType[*ConfigError](e); !ok || !errors.Is(e, spear.ErrInvalidConfig) {
				t.Fatalf("error %T %q is not a *ConfigError", e, e)
			}
		}
	})
}

// The mistakes that a field type's own decoding finds (limits.memory,
// inside a process function's limits) and those of the process runtime's
// own settings, which used to surface only when the runtime was created,
// are reported at load with their field's path and position, all of them.
func TestLoadConfigRuntimeProblemsPlaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spearlet.yaml")
	src := `process:
  cgroups: sometimes
  user_range: 2000-1000
functions:
  - name: a
    runtime: process
    command: /bin/a
    limits:
      memory: lots
      cpu: many
      memroy: 1Mi
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	want := path + `:2:12: process.cgroups: "sometimes": want auto, none or required
` + path + `:3:15: process.user_range: 2000-1000: want FIRST-LAST with FIRST above 0 (root) and LAST not below it, such as 200000-200999
` + path + `:9:15: functions[0].limits.memory: "lots" is not a whole number of bytes with an optional suffix such as Mi or G
` + path + `:10:12: functions[0].limits.cpu: "many" is not a number of CPUs such as 0.5 or 500m
` + path + `:11:15: functions[0].limits.memroy: unknown field: the process runtime has no such setting`
	if err == nil || err.Error() != want {
		t.Fatalf("err:\n%v\nwant:\n%s", err, want)
	}
	for _, e := range flatten(err) {
		if ce, ok := errors.AsType[*ConfigError](e); !ok || ce.Line == 0 {
			t.Errorf("%v: not a *ConfigError with a position", e)
		}
	}
	// Once the functions decode, the runtime's settings are still checked,
	// by Validate, with the runtime's own rule: this range parses, but
	// holds root.
	_, err = ParseConfig([]byte("process:\n  user_range: 0-10\nfunctions: [{name: a, runtime: process, command: /bin/a}]\n"))
	if want := "line 2, column 15: process.user_range: 0-10: want FIRST-LAST"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
	if err := (Config{Process: ProcessConfig{Cgroups: "always"}}).Validate(); err == nil || !strings.HasPrefix(err.Error(), `process.cgroups: "always"`) {
		t.Errorf("Validate: %v", err)
	}
}

// A file that does not decode still gets the validation's problems of
// its other functions in the same report.
func TestDecodeAndValidationProblemsTogether(t *testing.T) {
	_, err := ParseConfig([]byte("functions:\n  - {name: a, runtime: proces}\n  - {name: b, runtime: process, comand: x}\n"))
	want := "line 2, column 24: functions[0].runtime: \"proces\": want one of process, agent-fake, toy; did you mean \"process\"?\n" +
		"line 3, column 33: functions[1].comand: unknown field; did you mean \"command\"?"
	if err == nil || err.Error() != want {
		t.Errorf("err:\n%v\nwant:\n%s", err, want)
	}
}

// An error with several causes (fmt.Errorf with two %w) is one problem;
// only errors.Join lists several.
func TestFlattenSplitsOnlyJoins(t *testing.T) {
	one := fmt.Errorf("%w: %w", spear.ErrInvalidConfig, errors.New("bad"))
	other := errors.New("other")
	if got := flatten(errors.Join(one, other)); len(got) != 2 || got[0] != one || got[1] != other {
		t.Errorf("flatten = %q, want [%q %q]", got, one, other)
	}
}
