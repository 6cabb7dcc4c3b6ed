package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/balancer"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/internal/yamlpos"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/transport"
)

// Defaults of the configuration. Zero values in a Config mean these.
const (
	DefaultHTTPAddr = "127.0.0.1:7480"
	DefaultGRPCAddr = "127.0.0.1:7481"
	// DefaultChannelAddr is where the tcp and grpc channel listeners,
	// which instances connect to, listen: loopback, a free port.
	DefaultChannelAddr    = "127.0.0.1:0"
	DefaultInvokeTimeout  = 30 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
	DefaultMaxPayload     = 4 << 20
	DefaultMaxInstances   = 4
	DefaultMaxConcurrency = 32
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// DefaultAuthTimeout bounds how long a connection to the API or to a
	// shared channel listener may go without authenticating.
	DefaultAuthTimeout    = 5 * time.Second
	DefaultMaxQueue       = 1024
	DefaultStableWindow   = 60 * time.Second
	DefaultPanicWindow    = 6 * time.Second
	DefaultPanicThreshold = 2.0
	DefaultMaxConnections = 4 // per instance
	DefaultEjection       = 2 * time.Second
	DefaultMaxEjection    = time.Minute
	// MaxFunctionName is the longest function name: instance names add
	// "-" and 8 hex digits and must stay within spear.MaxNameLen.
	MaxFunctionName = spear.MaxNameLen - 9
	// maxPayloadLimit keeps room for the request's envelope under the
	// channel's default frame limit.
	maxPayloadLimit = 15 << 20
)

// Readiness values of a function.
const (
	ReadinessRequired = "required" // /readyz waits for the function's min_instances
	ReadinessOptional = "optional" // /readyz ignores the function
)

// Restart policies.
const (
	RestartOnFailure = "on-failure" // replace an instance that stopped unasked, with backoff
	RestartNever     = "never"      // forget it
)

// Config is the daemon's configuration. Its YAML form is documented in
// docs/agent.md; zero values mean the defaults. A setting whose value is
// a file or directory is tagged spear:"path" (spear:"path,none" when
// "none" turns it off), which ResolvePaths reads.
type Config struct {
	// StateDir is the agent's private state directory (default
	// /var/lib/spearlet for root, else $XDG_STATE_HOME/spearlet): its API
	// socket and token, its TLS keys, its lock, and the records of what it
	// started, for the next start to clean up after a crash. Two agents
	// never share one.
	StateDir   string           `json:"state_dir,omitempty" spear:"path"`
	API        APIConfig        `json:"api,omitzero"`
	Channels   ChannelsConfig   `json:"channels,omitzero"`
	Process    ProcessConfig    `json:"process,omitzero"`
	Kubernetes KubernetesConfig `json:"kubernetes,omitzero"`
	Wasm       WasmConfig       `json:"wasm,omitzero"`
	Metrics    MetricsConfig    `json:"metrics,omitzero"`
	// InvokeTimeout bounds an invocation that sets no timeout (default 30s).
	InvokeTimeout Duration `json:"invoke_timeout,omitempty"`
	// ShutdownGrace is how long in-flight invocations may run on after a
	// shutdown begins (default 30s).
	ShutdownGrace Duration `json:"shutdown_grace,omitempty"`
	// MaxPayload bounds an invocation's payload in bytes (default 4 MiB,
	// at most 15 MiB).
	MaxPayload int              `json:"max_payload,omitempty"`
	Functions  []FunctionConfig `json:"functions,omitempty"`
}

// APIConfig configures the API's listeners and how callers authenticate
// (docs/agent.md, "Authentication").
type APIConfig struct {
	// HTTPAddr is the HTTP/JSON API's address (default 127.0.0.1:7480);
	// "none" serves HTTP on the unix socket only.
	HTTPAddr string `json:"http_addr,omitempty"`
	// GRPCAddr is the gRPC API's address (default 127.0.0.1:7481); "none"
	// turns the gRPC API off.
	GRPCAddr string `json:"grpc_addr,omitempty"`
	// Socket is the HTTP API's unix socket (default api.sock in the state
	// directory; "none": no socket). Whoever may open it may use the API: it is
	// the agent user's alone (0600), or also SocketGroup's.
	Socket string `json:"socket,omitempty" spear:"path,none"`
	// SocketGroup, a group name or id, may use the socket too (0660).
	SocketGroup string `json:"socket_group,omitempty"`
	// TokenFile holds the bearer token that callers over TCP present
	// (default api-token in the state directory, generated at first
	// start). Set it to a mounted Kubernetes Secret to share one token.
	TokenFile string `json:"token_file,omitempty" spear:"path"`
	// Hostnames are names, besides localhost, the machine's hostname and
	// IP addresses, that the API answers to in the Host header.
	Hostnames []string `json:"hostnames,omitempty"`
	// TLS serves the TCP listeners (HTTP and gRPC) over TLS.
	TLS APITLSConfig `json:"tls,omitzero"`
	// AuthTimeout bounds how long a connection may stay without an
	// authenticated request (default 5s).
	AuthTimeout Duration `json:"auth_timeout,omitempty"`
}

// APITLSConfig is the API's TLS. CertFile and KeyFile are the server's
// certificate and key (PEM); with ClientCAFile, a client certificate that
// chains to it authenticates a caller as the token does.
type APITLSConfig struct {
	CertFile     string `json:"cert_file,omitempty" spear:"path"`
	KeyFile      string `json:"key_file,omitempty" spear:"path"`
	ClientCAFile string `json:"client_ca_file,omitempty" spear:"path"`
}

// addrNone is the value of an API address that turns the listener off
// ("off" would be a boolean in YAML).
const addrNone = "none"

// ChannelsConfig configures the channel factory (channel.Options) and the
// channels' defaults.
type ChannelsConfig struct {
	SocketDir     string `json:"socket_dir,omitempty" spear:"path"`
	TCPAddr       string `json:"tcp_addr,omitempty"`
	GRPCAddr      string `json:"grpc_addr,omitempty"`
	AdvertiseTCP  string `json:"advertise_tcp,omitempty"`
	AdvertiseGRPC string `json:"advertise_grpc,omitempty"`
	// RequestTimeout and HeartbeatInterval are every channel's defaults.
	RequestTimeout    Duration `json:"request_timeout,omitempty"`
	HeartbeatInterval Duration `json:"heartbeat_interval,omitempty"`
	// AuthTimeout bounds an instance connection's handshake, and how long
	// a grpc connection may stay without a stream (default 5s).
	AuthTimeout Duration `json:"auth_timeout,omitempty"`
	// TLS encrypts the network channels (tcp, grpc).
	TLS ChannelTLSConfig `json:"tls,omitzero"`
}

// ChannelTLSConfig is the TLS of the network channels (docs/agent.md,
// "TLS on the network channels").
type ChannelTLSConfig struct {
	// Mode is none (default), server (instances check the agent's
	// certificate) or mutual (the agent checks theirs too).
	Mode string `json:"mode,omitempty"`
	// CertFile and KeyFile are the agent's certificate and key (PEM);
	// default a self-signed pair generated into the state directory.
	CertFile string `json:"cert_file,omitempty" spear:"path"`
	KeyFile  string `json:"key_file,omitempty" spear:"path"`
	// CAFile, with a configured certificate, is the CA that instances
	// verify it against (by name: ServerName, else the advertised host);
	// without it, instances pin the certificate itself.
	CAFile     string `json:"ca_file,omitempty" spear:"path"`
	ServerName string `json:"server_name,omitempty"`
}

// ProcessConfig configures the process runtime. It is used only when a
// function has runtime process.
type ProcessConfig struct {
	// Cgroups is auto (default: a cgroup v2 per instance when the machine
	// allows it, else the fallback, announced at startup), none or
	// required.
	Cgroups string `json:"cgroups,omitempty"`
	// UserRange is a range of user ids, "FIRST-LAST", from which a
	// function with user "@range" gives each instance one of its own. The
	// agent must run as root.
	UserRange string `json:"user_range,omitempty"`
}

// MetricsConfig configures the Prometheus metrics (docs/observability.md).
type MetricsConfig struct {
	// PerInstance exports the per-instance series (spearlet_instance_*):
	// one set for each live instance, removed when it goes (default
	// true). false keeps only the per-function series, for agents that
	// run so many instances that the series would cost too much.
	PerInstance *bool `json:"per_instance,omitempty"`
}

// perInstance reports whether per-instance series are on.
func (m MetricsConfig) perInstance() bool { return m.PerInstance == nil || *m.PerInstance }

// KubernetesConfig configures the kubernetes runtime. It is used only when
// a function has runtime kubernetes.
type KubernetesConfig struct {
	// Kubeconfig is the kubeconfig file; empty means the in-cluster config.
	Kubeconfig string `json:"kubeconfig,omitempty" spear:"path"`
	// Namespace is where pods go when a function names none.
	Namespace string `json:"namespace,omitempty"`
	// NodeName is the node the agent runs on; a DaemonSet sets it from
	// spec.nodeName. Pods are then scheduled on that node and labelled
	// with it, and the agent deletes the ones a previous run on the node
	// left behind (kubernetes.Options.NodeName). Agents that share a
	// namespace need distinct node names.
	NodeName string `json:"node_name,omitempty"`
}

// WasmConfig configures the wasm runtime.
type WasmConfig struct {
	// CacheDir keeps compiled modules across restarts. Default: a
	// directory in the user's cache directory when one can be created
	// there, else none (modules are compiled at every start). A directory
	// set here that cannot be used is an error; on a read-only root
	// filesystem, point it at a writable volume.
	CacheDir string `json:"cache_dir,omitempty" spear:"path"`
}

// FunctionConfig declares one function and its pool of instances. In
// YAML it is one mapping: the fields below, which every function has,
// and the fields of its runtime's Spec (process: command, args, env, dir;
// wasm: wasm, args, env, memory; kubernetes: image, namespace, labels,
// cpu, memory, env), which the runtime's registered runtime.Kind decodes.
type FunctionConfig struct {
	// Name is the function's name: lowercase letters, digits, '-' and '.',
	// at most MaxFunctionName bytes.
	Name string `json:"name"`
	// Runtime names the runtime type: process, wasm, kubernetes, or a
	// registered one.
	Runtime string `json:"runtime"`

	// MinInstances are started with the agent and kept; MaxInstances caps
	// the pool (default 4); MaxConcurrency caps the in-flight invocations
	// per instance (default 32, or the runtime's Kind.MaxConcurrency: 1
	// for wasm, whose guests serve one request at a time).
	MinInstances   int `json:"min_instances,omitempty"`
	MaxInstances   int `json:"max_instances,omitempty"`
	MaxConcurrency int `json:"max_concurrency,omitempty"`

	// Balancer chooses the instance of each invocation: least-inflight
	// (default), round-robin, p2c-ewma or hash (on the invocation's
	// key). HashLoadFactor bounds the hash policy's load per instance, as
	// a multiple of the mean (default 1.25).
	Balancer       string  `json:"balancer,omitempty"`
	HashLoadFactor float64 `json:"hash_load_factor,omitempty"`
	// Connections is how many connections each instance opens to the
	// agent: a number (default 1) or "auto" (grown under sustained
	// contention, shrunk when idle). Instances that cannot open more
	// keep one.
	Connections Connections `json:"connections,omitzero"`

	// IdleTimeout stops an instance that has served nothing for this
	// long, down to MinInstances (which may be 0); 0 never does.
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	// MaxQueue bounds the invocations waiting for an instance (default
	// 1024); past it an invocation fails at once with ErrQueueFull (HTTP
	// 429 with Retry-After).
	MaxQueue int `json:"max_queue,omitempty"`
	// TargetConcurrency, when set, scales the pool so that each instance
	// runs about this many invocations, averaged over StableWindow
	// (default 60s), or over PanicWindow (default 6s) when that asks
	// for PanicThreshold (default 2) times the ready instances.
	TargetConcurrency float64  `json:"target_concurrency,omitempty"`
	StableWindow      Duration `json:"stable_window,omitempty"`
	PanicWindow       Duration `json:"panic_window,omitempty"`
	PanicThreshold    float64  `json:"panic_threshold,omitempty"`
	// Outlier configures the ejection of failing or slow instances.
	Outlier OutlierConfig `json:"outlier,omitzero"`

	// Readiness is required (default: the agent is not ready until the
	// function has min_instances ready) or optional (the function never
	// holds back /readyz, though its health still shows).
	Readiness string `json:"readiness,omitempty"`

	Channel      FunctionChannelConfig `json:"channel,omitzero"`
	Restart      RestartConfig         `json:"restart,omitzero"`
	StartTimeout Duration              `json:"start_timeout,omitempty"`
	StopGrace    Duration              `json:"stop_grace,omitempty"`

	// Spec is what the function's instances run, in the runtime's own
	// type (a process.Spec, wasm.Spec, kubernetes.Spec, ...). Decoding
	// fills it from the function's other fields.
	Spec runtime.Spec `json:"-"`
}

// functionFields is FunctionConfig without its JSON methods.
type functionFields FunctionConfig

// MarshalJSON writes the common fields followed by the Spec's, in one
// object, as a configuration file holds them.
func (f FunctionConfig) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(functionFields(f))
	if err != nil || f.Spec == nil {
		return b, err
	}
	own, err := json.Marshal(f.Spec)
	if err != nil {
		return nil, err
	}
	if len(own) > 2 { // not "{}"
		b = append(append(b[:len(b)-1], ','), own[1:]...)
	}
	return b, nil
}

// settings are the runtime.Settings of the function's instances.
func (f FunctionConfig) settings() runtime.Settings {
	set := runtime.Settings{
		Function:     f.Name,
		StartTimeout: f.StartTimeout.D(),
		StopGrace:    f.StopGrace.D(),
	}
	if c := f.Channel; c != (FunctionChannelConfig{}) || f.Connections.N > 1 {
		set.Channel = &channel.Config{
			Type:              channel.Type(c.Type),
			RequestTimeout:    c.RequestTimeout.D(),
			HeartbeatInterval: c.HeartbeatInterval.D(),
			MaxConnections:    c.MaxConnections,
			Connections:       f.Connections.N,
		}
	}
	return set
}

// FunctionChannelConfig overrides the channel of a function's instances.
type FunctionChannelConfig struct {
	// Type forces a channel type (unix, tcp, grpc, memory) instead of the
	// runtime's strategy.
	Type              string   `json:"type,omitempty"`
	RequestTimeout    Duration `json:"request_timeout,omitempty"`
	HeartbeatInterval Duration `json:"heartbeat_interval,omitempty"`
	// MaxConnections caps an instance's connections, handshaking or
	// bound (default 4); the function's connections count against it.
	MaxConnections int `json:"max_connections,omitempty"`
}

// OutlierConfig says when an instance is ejected: taken out of balancing
// for a back-off, then readmitted on probation. Zero values mean the
// defaults.
type OutlierConfig struct {
	// Disabled turns ejection off.
	Disabled bool `json:"disabled,omitempty"`
	// ConsecutiveErrors ejects an instance after this many instance-side
	// failures in a row (default 5).
	ConsecutiveErrors int `json:"consecutive_errors,omitempty"`
	// LatencyFactor, when set, ejects an instance whose latency average,
	// or heartbeat round trip, is more than this many times the median
	// of its peers'.
	LatencyFactor float64 `json:"latency_factor,omitempty"`
	// BaseEjection is the first ejection's length (default 2s); each
	// ejection in a row doubles it, up to MaxEjection (default 1m).
	BaseEjection Duration `json:"base_ejection,omitempty"`
	MaxEjection  Duration `json:"max_ejection,omitempty"`
	// MaxEjectedPercent caps the share of instances ejected at once
	// (default 50; at least one may be, never the last).
	MaxEjectedPercent int `json:"max_ejected_percent,omitempty"`
	// Probation is how many successes a readmitted instance serves, one
	// at a time, before it is trusted again (default 3). One failure on
	// probation ejects it again.
	Probation int `json:"probation,omitempty"`
}

// Connections is a function's connections per instance: a count, or auto.
type Connections struct {
	N    int  // fixed count; 0 means the default, 1
	Auto bool // grow and shrink with contention
}

// MarshalJSON writes "auto" or the count.
func (c Connections) MarshalJSON() ([]byte, error) {
	if c.Auto {
		return []byte(`"auto"`), nil
	}
	return json.Marshal(c.N)
}

// UnmarshalJSON reads "auto" or a count.
func (c *Connections) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s != "auto" {
			return fmt.Errorf("connections %q: want a number or auto", s)
		}
		*c = Connections{Auto: true}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("connections %s: want a number or auto", b)
	}
	*c = Connections{N: n}
	return nil
}

// RestartConfig says what happens to an instance that stops unasked.
type RestartConfig struct {
	// Policy is on-failure (default) or never.
	Policy string `json:"policy,omitempty"`
	// InitialBackoff (default 200ms) doubles per consecutive failure up
	// to MaxBackoff (default 30s).
	InitialBackoff Duration `json:"initial_backoff,omitempty"`
	MaxBackoff     Duration `json:"max_backoff,omitempty"`
}

// Duration is a time.Duration written in YAML and JSON as a string with a
// unit, such as "1.5s" or "250ms", or as a bare number of seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("250ms", "2m") or a number of
// seconds, as ParseDuration does.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a duration such as 5s, 250ms or 2m, got %s", b)
		}
		s = n.String()
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads a duration as the configuration and the CLI take
// it: a number with a unit ("250ms", "1.5s", "2m", "1h30m"), or a bare
// number of seconds ("5", "0.25").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "xXnNiI") {
		if math.Abs(f) > float64(math.MaxInt64)/float64(time.Second) {
			return 0, fmt.Errorf("%s seconds is too long a duration", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number and a unit (ms, s, m, h), such as 5s, 250ms or 2m, or a number of seconds", s)
	}
	return d, nil
}

// The environment variables ApplyEnv reads, and what they set.
var envVars = []struct {
	name string
	set  func(*Config, string)
}{
	{"SPEARLET_STATE_DIR", func(c *Config, v string) { c.StateDir = v }},
	{"SPEARLET_HTTP_ADDR", func(c *Config, v string) { c.API.HTTPAddr = v }},
	{"SPEARLET_API_GRPC_ADDR", func(c *Config, v string) { c.API.GRPCAddr = v }},
	{"SPEARLET_API_SOCKET", func(c *Config, v string) { c.API.Socket = v }},
	{"SPEARLET_API_TOKEN_FILE", func(c *Config, v string) { c.API.TokenFile = v }},
	{"SPEARLET_SOCKET_DIR", func(c *Config, v string) { c.Channels.SocketDir = v }},
	{"SPEARLET_TCP_ADDR", func(c *Config, v string) { c.Channels.TCPAddr = v }},
	{"SPEARLET_GRPC_ADDR", func(c *Config, v string) { c.Channels.GRPCAddr = v }},
	{"SPEARLET_ADVERTISE_TCP", func(c *Config, v string) { c.Channels.AdvertiseTCP = v }},
	{"SPEARLET_ADVERTISE_GRPC", func(c *Config, v string) { c.Channels.AdvertiseGRPC = v }},
	{"SPEARLET_KUBECONFIG", func(c *Config, v string) { c.Kubernetes.Kubeconfig = v }},
	{"SPEARLET_KUBE_NAMESPACE", func(c *Config, v string) { c.Kubernetes.Namespace = v }},
	{"SPEARLET_NODE_NAME", func(c *Config, v string) { c.Kubernetes.NodeName = v }},
	{"SPEARLET_WASM_CACHE_DIR", func(c *Config, v string) { c.Wasm.CacheDir = v }},
}

// EnvVars lists the environment variables ApplyEnv reads.
func EnvVars() []string {
	names := make([]string, len(envVars))
	for i, e := range envVars {
		names[i] = e.name
	}
	return names
}

// ApplyEnv overrides c with the SPEARLET_* variables that lookup finds
// (os.LookupEnv in the daemon). Empty values are ignored.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	for _, e := range envVars {
		if v, ok := lookup(e.name); ok && v != "" {
			e.set(c, v)
		}
	}
}

// WithDefaults returns c with its zero values replaced by the defaults: the
// configuration in effect.
func (c Config) WithDefaults() Config { return c.withDefaults() }

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	c.StateDir = cmp.Or(c.StateDir, statedir.Default())
	c.API.HTTPAddr = cmp.Or(c.API.HTTPAddr, DefaultHTTPAddr)
	c.API.GRPCAddr = cmp.Or(c.API.GRPCAddr, DefaultGRPCAddr)
	c.API.AuthTimeout = cmp.Or(c.API.AuthTimeout, Duration(DefaultAuthTimeout))
	c.Channels.AuthTimeout = cmp.Or(c.Channels.AuthTimeout, Duration(DefaultAuthTimeout))
	c.Channels.TLS.Mode = cmp.Or(c.Channels.TLS.Mode, TLSNone)
	c.InvokeTimeout = cmp.Or(c.InvokeTimeout, Duration(DefaultInvokeTimeout))
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, Duration(DefaultShutdownGrace))
	c.MaxPayload = cmp.Or(c.MaxPayload, DefaultMaxPayload)
	ch := channel.Defaults()
	c.Channels.SocketDir = cmp.Or(c.Channels.SocketDir, os.TempDir())
	c.Channels.TCPAddr = cmp.Or(c.Channels.TCPAddr, DefaultChannelAddr)
	c.Channels.GRPCAddr = cmp.Or(c.Channels.GRPCAddr, DefaultChannelAddr)
	c.Channels.RequestTimeout = cmp.Or(c.Channels.RequestTimeout, Duration(ch.RequestTimeout))
	c.Channels.HeartbeatInterval = cmp.Or(c.Channels.HeartbeatInterval, Duration(ch.HeartbeatInterval))
	c.Process.Cgroups = cmp.Or(c.Process.Cgroups, "auto")
	c.Functions = slices.Clone(c.Functions)
	for i := range c.Functions {
		c.Functions[i] = c.Functions[i].withDefaults()
	}
	return c
}

func (f FunctionConfig) withDefaults() FunctionConfig {
	f.MaxInstances = cmp.Or(f.MaxInstances, DefaultMaxInstances)
	f.MaxInstances = max(f.MaxInstances, f.MinInstances)
	if f.MaxConcurrency == 0 {
		f.MaxConcurrency = DefaultMaxConcurrency
		if t, err := spear.ParseRuntimeType(f.Runtime); err == nil {
			if k, ok := runtime.Lookup(t); ok && k.MaxConcurrency > 0 {
				f.MaxConcurrency = k.MaxConcurrency
			}
		}
	}
	f.Balancer = cmp.Or(f.Balancer, string(balancer.LeastInflight))
	f.HashLoadFactor = cmp.Or(f.HashLoadFactor, balancer.DefaultLoadFactor)
	f.Channel.MaxConnections = cmp.Or(f.Channel.MaxConnections, DefaultMaxConnections)
	if !f.Connections.Auto {
		f.Connections.N = cmp.Or(f.Connections.N, 1)
	}
	f.MaxQueue = cmp.Or(f.MaxQueue, DefaultMaxQueue)
	f.StableWindow = cmp.Or(f.StableWindow, Duration(DefaultStableWindow))
	f.PanicWindow = cmp.Or(f.PanicWindow, Duration(min(DefaultPanicWindow, f.StableWindow.D())))
	f.PanicThreshold = cmp.Or(f.PanicThreshold, DefaultPanicThreshold)
	o := &f.Outlier
	o.ConsecutiveErrors = cmp.Or(o.ConsecutiveErrors, 5)
	o.BaseEjection = cmp.Or(o.BaseEjection, Duration(DefaultEjection))
	o.MaxEjection = max(cmp.Or(o.MaxEjection, Duration(DefaultMaxEjection)), o.BaseEjection)
	o.MaxEjectedPercent = cmp.Or(o.MaxEjectedPercent, 50)
	o.Probation = cmp.Or(o.Probation, 3)
	f.Readiness = cmp.Or(f.Readiness, ReadinessRequired)
	f.Restart.Policy = cmp.Or(f.Restart.Policy, RestartOnFailure)
	f.Restart.InitialBackoff = cmp.Or(f.Restart.InitialBackoff, Duration(DefaultInitialBackoff))
	f.Restart.MaxBackoff = cmp.Or(f.Restart.MaxBackoff, Duration(DefaultMaxBackoff))
	f.Restart.MaxBackoff = max(f.Restart.MaxBackoff, f.Restart.InitialBackoff)
	return f
}

// Validate reports every problem in c, each a *ConfigError that names
// the field by its YAML path (the error matches spear.ErrInvalidConfig).
// LoadConfig adds where each one is in the file.
func (c Config) Validate() error {
	var p problems
	if c.InvokeTimeout < 0 {
		p.add("invoke_timeout", "may not be negative")
	}
	if c.ShutdownGrace < 0 {
		p.add("shutdown_grace", "may not be negative")
	}
	if c.MaxPayload < 0 || c.MaxPayload > maxPayloadLimit {
		p.add("max_payload", "%d is out of range (0 to %d bytes)", c.MaxPayload, maxPayloadLimit)
	}
	if c.Channels.RequestTimeout < 0 {
		p.add("channels.request_timeout", "may not be negative")
	}
	if c.API.AuthTimeout < 0 {
		p.add("api.auth_timeout", "may not be negative")
	}
	if c.Channels.AuthTimeout < 0 {
		p.add("channels.auth_timeout", "may not be negative")
	}
	switch t := c.API.TLS; {
	case (t.CertFile == "") != (t.KeyFile == ""):
		p.add("api.tls", "cert_file and key_file go together")
	case t.ClientCAFile != "" && t.CertFile == "":
		p.add("api.tls.client_ca_file", "needs cert_file and key_file")
	}
	if c.API.HTTPAddr == addrNone && c.API.Socket == addrNone {
		p.add("api", "http_addr and socket are both none: nothing would serve the API")
	}
	switch t := c.Channels.TLS; {
	case t.Mode != "" && t.Mode != TLSNone && t.Mode != TLSServer && t.Mode != TLSMutual:
		p.add("channels.tls.mode", "%q: want none, server or mutual%s", t.Mode, didYouMean(t.Mode, []string{TLSNone, TLSServer, TLSMutual}))
	case (t.CertFile == "") != (t.KeyFile == ""):
		p.add("channels.tls", "cert_file and key_file go together")
	case t.CAFile != "" && t.CertFile == "":
		p.add("channels.tls.ca_file", "needs cert_file and key_file: it is the CA of a configured certificate")
	}
	if h := c.Channels.HeartbeatInterval.D(); channel.CheckHeartbeatInterval(h) != nil {
		p.add("channels.heartbeat_interval", "%s is under %s", h, channel.MinHeartbeatInterval)
	}
	c.validateRuntimes(&p)
	seen := map[string]int{}
	for i, f := range c.Functions {
		at := yamlpos.Index("functions", i)
		if j, dup := seen[f.Name]; dup && f.Name != "" {
			p.add(at+".name", "duplicate function name %q (functions[%d] has it too)", f.Name, j)
		} else {
			seen[f.Name] = i
		}
		f.validate(&p, at)
	}
	return p.err()
}

// validateRuntimes records the problems that the registered runtimes
// find in their sections of c (Kind.ValidateOptions): the settings each
// is created with, checked here so that a mistake is found when the
// configuration is loaded, at its line, rather than when the runtime is
// created.
func (c Config) validateRuntimes(p *problems) {
	sections := map[spear.RuntimeType]any{spear.Process: c.Process, spear.Wasm: c.Wasm, spear.Kubernetes: c.Kubernetes}
	for _, k := range runtime.Kinds() {
		section, ok := sections[k.Type]
		if !ok || k.ValidateOptions == nil {
			continue
		}
		b, err := json.Marshal(section)
		if err == nil {
			err = k.ValidateOptions(b)
		}
		p.addSpec(k.Type.String(), err)
	}
}

// problems collects a configuration's problems.
type problems struct{ errs []error }

// add records a problem of the value at path.
func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, &ConfigError{Path: path, Problem: fmt.Sprintf(format, args...)})
}

// addSpec records the problems a runtime reported for the spec of the
// function at path: *runtime.FieldError values name their field.
func (p *problems) addSpec(path string, err error) {
	for _, e := range flatten(err) {
		if fe, ok := errors.AsType[*runtime.FieldError](e); ok {
			p.add(yamlpos.Join(path, fe.Field), "%s", fe.Problem)
		} else {
			p.add(path, "%s", strings.TrimPrefix(e.Error(), spear.ErrInvalidConfig.Error()+": "))
		}
	}
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// validate records the problems of the function at path at.
func (f FunctionConfig) validate(p *problems, at string) {
	switch {
	case f.Name == "":
		p.add(at+".name", "required")
	case len(f.Name) > MaxFunctionName:
		p.add(at+".name", "%q is %d bytes long, the limit is %d", f.Name, len(f.Name), MaxFunctionName)
	default:
		if err := (spear.InstanceID{Runtime: spear.Process, Name: f.Name}).Validate(); err != nil {
			p.add(at+".name", "%q: use lowercase letters, digits, and '-' or '.' inside", f.Name)
		}
	}
	rt, known := f.validateSpec(p, at)
	for _, n := range []struct {
		field string
		v     int
	}{{"min_instances", f.MinInstances}, {"max_instances", f.MaxInstances}, {"max_concurrency", f.MaxConcurrency}} {
		if n.v < 0 {
			p.add(at+"."+n.field, "may not be negative")
		}
	}
	if f.MaxInstances > 0 && f.MinInstances > f.MaxInstances {
		p.add(at+".min_instances", "%d is above max_instances %d", f.MinInstances, f.MaxInstances)
	}
	if f.Channel.Type != "" {
		ct, err := channel.ParseType(f.Channel.Type)
		strategy, builtin := channel.DefaultStrategies()[rt]
		switch {
		case err != nil:
			p.add(at+".channel.type", "%q: want %s%s", f.Channel.Type, transport.Choices(), didYouMean(f.Channel.Type, transport.Names()))
		case known && builtin && !strategy.Allows(ct):
			p.add(at+".channel.type", "%s: a %s function's channel is %s", ct, rt, strategy.Choices())
		}
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"channel.request_timeout", f.Channel.RequestTimeout}, {"restart.initial_backoff", f.Restart.InitialBackoff},
		{"restart.max_backoff", f.Restart.MaxBackoff}, {"start_timeout", f.StartTimeout}, {"stop_grace", f.StopGrace},
		{"idle_timeout", f.IdleTimeout}, {"stable_window", f.StableWindow}, {"panic_window", f.PanicWindow},
		{"outlier.base_ejection", f.Outlier.BaseEjection}, {"outlier.max_ejection", f.Outlier.MaxEjection},
	} {
		if d.v < 0 {
			p.add(at+"."+d.field, "may not be negative")
		}
	}
	if h := f.Channel.HeartbeatInterval.D(); channel.CheckHeartbeatInterval(h) != nil {
		p.add(at+".channel.heartbeat_interval", "%s is under %s", h, channel.MinHeartbeatInterval)
	}
	if r := f.Readiness; r != "" && r != ReadinessRequired && r != ReadinessOptional {
		p.add(at+".readiness", "%q: want required or optional%s", r, didYouMean(r, []string{ReadinessRequired, ReadinessOptional}))
	}
	if pol := f.Restart.Policy; pol != "" && pol != RestartOnFailure && pol != RestartNever {
		p.add(at+".restart.policy", "%q: want on-failure or never%s", pol, didYouMean(pol, []string{RestartOnFailure, RestartNever}))
	}
	f.validatePool(p, at)
}

// validatePool records the problems of the balancing, scaling and
// connection fields of the function at path at.
func (f FunctionConfig) validatePool(p *problems, at string) {
	if _, err := balancer.New(balancer.Policy(f.Balancer), balancer.Options{}); err != nil {
		p.add(at+".balancer", "%v", err)
	}
	if f.HashLoadFactor != 0 && f.HashLoadFactor <= 1 {
		p.add(at+".hash_load_factor", "%g: want more than 1", f.HashLoadFactor)
	}
	maxConns := cmp.Or(f.Channel.MaxConnections, DefaultMaxConnections)
	switch {
	case f.Channel.MaxConnections < 0:
		p.add(at+".channel.max_connections", "may not be negative")
	case f.Connections.N < 0:
		p.add(at+".connections", "may not be negative")
	case f.Connections.N > maxConns:
		p.add(at+".connections", "%d is above channel.max_connections %d: connections count against the instance's cap", f.Connections.N, maxConns)
	}
	if f.MaxQueue < 0 {
		p.add(at+".max_queue", "may not be negative")
	}
	if f.TargetConcurrency < 0 {
		p.add(at+".target_concurrency", "may not be negative")
	}
	if f.PanicThreshold < 0 || f.PanicThreshold != 0 && f.PanicThreshold <= 1 {
		p.add(at+".panic_threshold", "%g: want more than 1", f.PanicThreshold)
	}
	if f.StableWindow != 0 && f.PanicWindow > f.StableWindow {
		p.add(at+".panic_window", "%s is longer than stable_window %s", f.PanicWindow.D(), f.StableWindow.D())
	}
	o := f.Outlier
	for _, n := range []struct {
		field string
		v     int
	}{{"consecutive_errors", o.ConsecutiveErrors}, {"probation", o.Probation}} {
		if n.v < 0 {
			p.add(at+".outlier."+n.field, "may not be negative")
		}
	}
	if o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100 {
		p.add(at+".outlier.max_ejected_percent", "%d: want 0 to 100", o.MaxEjectedPercent)
	}
	if o.LatencyFactor < 0 || o.LatencyFactor != 0 && o.LatencyFactor <= 1 {
		p.add(at+".outlier.latency_factor", "%g: want more than 1", o.LatencyFactor)
	}
}

// validateSpec records the problems of the function's runtime and Spec,
// and returns the runtime type, and whether it is one this program has.
func (f FunctionConfig) validateSpec(p *problems, at string) (spear.RuntimeType, bool) {
	var known []string
	for _, k := range runtime.Kinds() {
		known = append(known, k.Type.String())
	}
	t, err := spear.ParseRuntimeType(f.Runtime)
	switch {
	case f.Runtime == "":
		p.add(at+".runtime", "required: one of %s", strings.Join(known, ", "))
		return t, false
	case err != nil:
		p.add(at+".runtime", "%q: want one of %s%s", f.Runtime, strings.Join(known, ", "), didYouMean(f.Runtime, known))
		return t, false
	}
	if _, ok := runtime.Lookup(t); !ok {
		p.add(at+".runtime", "runtime %q is not built into this program, which has %s", f.Runtime, strings.Join(known, ", "))
		return t, false
	}
	switch {
	case f.Spec == nil:
		p.add(at, "no %s spec (FunctionConfig.Spec)", t)
	case f.Spec.RuntimeType() != t:
		p.add(at, "the spec is for the %s runtime, not %s", f.Spec.RuntimeType(), t)
	default:
		p.addSpec(at, f.Spec.Validate())
	}
	return t, true
}

// didYouMean returns `; did you mean "x"?` for the candidate that word
// most likely misspells, or "".
func didYouMean(word string, candidates []string) string {
	if s := yamlpos.Closest(word, candidates); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

// joinType is the type of errors.Join's errors.
var joinType = reflect.TypeOf(errors.Join(errors.New("")))

// flatten lists the errors that errors.Join joined into err. Another
// error with several causes, such as fmt.Errorf("%w: %w", ...), is one
// problem, not several.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && reflect.TypeOf(err) == joinType {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// The modes of channels.tls.
const (
	TLSNone   = "none"   // network channels in plaintext (the handshake still authenticates)
	TLSServer = "server" // instances check the agent's certificate
	TLSMutual = "mutual" // and the agent checks the instance's
)
