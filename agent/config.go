package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/transport"
)

// Defaults of the configuration. Zero values in a Config mean these.
const (
	DefaultHTTPAddr       = "127.0.0.1:7480"
	DefaultGRPCAddr       = "127.0.0.1:7481"
	DefaultInvokeTimeout  = 30 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
	DefaultMaxPayload     = 4 << 20
	DefaultMaxInstances   = 4
	DefaultMaxConcurrency = 32
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// MaxFunctionName is the longest function name: instance names add
	// "-" and 8 hex digits and must stay within spear.MaxNameLen.
	MaxFunctionName = spear.MaxNameLen - 9
	// maxPayloadLimit keeps room for the request's envelope under the
	// channel's default frame limit.
	maxPayloadLimit = 15 << 20
)

// Restart policies.
const (
	RestartOnFailure = "on-failure" // replace an instance that stopped unasked, with backoff
	RestartNever     = "never"      // forget it
)

// Config is the daemon's configuration. Its YAML form is documented in
// docs/agent.md; zero values mean the defaults.
type Config struct {
	API        APIConfig        `json:"api,omitzero"`
	Channels   ChannelsConfig   `json:"channels,omitzero"`
	Process    ProcessConfig    `json:"process,omitzero"`
	Kubernetes KubernetesConfig `json:"kubernetes,omitzero"`
	Wasm       WasmConfig       `json:"wasm,omitzero"`
	// StateDir is the agent's private state directory (default
	// /var/lib/spearlet for root, else $XDG_STATE_HOME/spearlet): the
	// records of what it started, for the next start to clean up after a
	// crash. spearlet serve opens and locks it before anything else.
	StateDir string `json:"state_dir,omitempty"`
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

// APIConfig holds the API's listen addresses.
type APIConfig struct {
	// HTTPAddr is the HTTP/JSON API's address (default 127.0.0.1:7480).
	HTTPAddr string `json:"http_addr,omitempty"`
	// GRPCAddr is the gRPC API's address (default 127.0.0.1:7481).
	GRPCAddr string `json:"grpc_addr,omitempty"`
}

// ChannelsConfig configures the channel factory (channel.Options) and the
// channels' defaults.
type ChannelsConfig struct {
	SocketDir     string `json:"socket_dir,omitempty"`
	TCPAddr       string `json:"tcp_addr,omitempty"`
	GRPCAddr      string `json:"grpc_addr,omitempty"`
	AdvertiseTCP  string `json:"advertise_tcp,omitempty"`
	AdvertiseGRPC string `json:"advertise_grpc,omitempty"`
	// RequestTimeout and HeartbeatInterval are every channel's defaults.
	RequestTimeout    Duration `json:"request_timeout,omitempty"`
	HeartbeatInterval Duration `json:"heartbeat_interval,omitempty"`
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

// KubernetesConfig configures the kubernetes runtime. It is used only when
// a function has runtime kubernetes.
type KubernetesConfig struct {
	// Kubeconfig is the kubeconfig file; empty means the in-cluster config.
	Kubeconfig string `json:"kubeconfig,omitempty"`
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
	CacheDir string `json:"cache_dir,omitempty"`
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

// commonFields are the JSON names of the fields every function has; the
// others belong to its runtime.
var commonFields = func() map[string]bool {
	m := map[string]bool{}
	for f := range reflect.TypeFor[functionFields]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// UnmarshalJSON decodes the common fields, then hands the others to the
// runtime's Kind, which decodes them into Spec and refuses unknown ones.
// A function whose runtime is unknown gets no Spec; Validate reports it.
func (f *FunctionConfig) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	*f = FunctionConfig{}
	if err := json.Unmarshal(b, (*functionFields)(f)); err != nil {
		return err
	}
	own := map[string]json.RawMessage{}
	for k, v := range fields {
		if !commonFields[k] {
			own[k] = v
		}
	}
	t, err := spear.ParseRuntimeType(f.Runtime)
	if err != nil {
		return nil
	}
	kind, ok := runtime.Lookup(t)
	if !ok {
		return nil
	}
	data, err := json.Marshal(own)
	if err != nil {
		return err
	}
	if f.Spec, err = kind.DecodeSpec(data); err != nil {
		return fmt.Errorf("function %q: %w", f.Name, err)
	}
	return nil
}

// MarshalJSON writes the common fields followed by the Spec's, in one
// object, as UnmarshalJSON reads them.
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
	if c := f.Channel; c != (FunctionChannelConfig{}) {
		set.Channel = &channel.Config{
			Type:              channel.Type(c.Type),
			RequestTimeout:    c.RequestTimeout.D(),
			HeartbeatInterval: c.HeartbeatInterval.D(),
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

// Duration is a time.Duration written as a string such as "1.5s" in YAML
// and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("250ms", "2m").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s is not a string such as \"5s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads the YAML configuration at path. Errors match
// spear.ErrConfig, and spear.ErrInvalidConfig when the file is malformed
// or invalid.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses a YAML (or JSON) configuration and validates it.
// Unknown fields are errors. A function's runtime must be registered
// (runtime.Register: its package imported) to decode its fields. Errors
// match spear.ErrInvalidConfig.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %w", spear.ErrInvalidConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// The environment variables ApplyEnv reads, and what they set.
var envVars = []struct {
	name string
	set  func(*Config, string)
}{
	{"SPEARLET_HTTP_ADDR", func(c *Config, v string) { c.API.HTTPAddr = v }},
	{"SPEARLET_API_GRPC_ADDR", func(c *Config, v string) { c.API.GRPCAddr = v }},
	{"SPEARLET_SOCKET_DIR", func(c *Config, v string) { c.Channels.SocketDir = v }},
	{"SPEARLET_TCP_ADDR", func(c *Config, v string) { c.Channels.TCPAddr = v }},
	{"SPEARLET_GRPC_ADDR", func(c *Config, v string) { c.Channels.GRPCAddr = v }},
	{"SPEARLET_ADVERTISE_TCP", func(c *Config, v string) { c.Channels.AdvertiseTCP = v }},
	{"SPEARLET_ADVERTISE_GRPC", func(c *Config, v string) { c.Channels.AdvertiseGRPC = v }},
	{"SPEARLET_KUBECONFIG", func(c *Config, v string) { c.Kubernetes.Kubeconfig = v }},
	{"SPEARLET_KUBE_NAMESPACE", func(c *Config, v string) { c.Kubernetes.Namespace = v }},
	{"SPEARLET_NODE_NAME", func(c *Config, v string) { c.Kubernetes.NodeName = v }},
	{"SPEARLET_WASM_CACHE_DIR", func(c *Config, v string) { c.Wasm.CacheDir = v }},
	{"SPEARLET_STATE_DIR", func(c *Config, v string) { c.StateDir = v }},
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
	c.API.HTTPAddr = cmp.Or(c.API.HTTPAddr, DefaultHTTPAddr)
	c.API.GRPCAddr = cmp.Or(c.API.GRPCAddr, DefaultGRPCAddr)
	c.InvokeTimeout = cmp.Or(c.InvokeTimeout, Duration(DefaultInvokeTimeout))
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, Duration(DefaultShutdownGrace))
	c.MaxPayload = cmp.Or(c.MaxPayload, DefaultMaxPayload)
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
	f.Restart.Policy = cmp.Or(f.Restart.Policy, RestartOnFailure)
	f.Restart.InitialBackoff = cmp.Or(f.Restart.InitialBackoff, Duration(DefaultInitialBackoff))
	f.Restart.MaxBackoff = cmp.Or(f.Restart.MaxBackoff, Duration(DefaultMaxBackoff))
	f.Restart.MaxBackoff = max(f.Restart.MaxBackoff, f.Restart.InitialBackoff)
	return f
}

// Validate reports every problem in c, each as an error matching
// spear.ErrInvalidConfig that names the field.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{spear.ErrInvalidConfig}, args...)...))
	}
	if c.InvokeTimeout < 0 || c.ShutdownGrace < 0 {
		bad("invoke_timeout and shutdown_grace may not be negative")
	}
	if c.MaxPayload < 0 || c.MaxPayload > maxPayloadLimit {
		bad("max_payload %d is out of range (0 to %d bytes)", c.MaxPayload, maxPayloadLimit)
	}
	if c.Channels.RequestTimeout < 0 {
		bad("channels.request_timeout may not be negative")
	}
	if h := c.Channels.HeartbeatInterval.D(); channel.CheckHeartbeatInterval(h) != nil {
		bad("channels.heartbeat_interval %s is under %s", h, channel.MinHeartbeatInterval)
	}
	seen := map[string]bool{}
	for i, f := range c.Functions {
		where := fmt.Sprintf("functions[%d]", i)
		if f.Name != "" {
			where += fmt.Sprintf(" (%s)", f.Name)
			if seen[f.Name] {
				bad("%s: duplicate function name", where)
			}
			seen[f.Name] = true
		}
		for _, err := range f.validate() {
			bad("%s: %s", where, err)
		}
	}
	return errors.Join(errs...)
}

// validate returns the problems of one function, as plain messages.
func (f FunctionConfig) validate() []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch {
	case f.Name == "":
		bad("name is required")
	case len(f.Name) > MaxFunctionName:
		bad("name is %d bytes long, the limit is %d", len(f.Name), MaxFunctionName)
	default:
		if err := (spear.InstanceID{Runtime: spear.Process, Name: f.Name}).Validate(); err != nil {
			bad("name %q: use lowercase letters, digits, and '-' or '.' inside", f.Name)
		}
	}
	errs = append(errs, f.validateSpec()...)
	if f.MinInstances < 0 || f.MaxInstances < 0 || f.MaxConcurrency < 0 {
		bad("min_instances, max_instances and max_concurrency may not be negative")
	}
	if f.MaxInstances > 0 && f.MinInstances > f.MaxInstances {
		bad("min_instances %d is above max_instances %d", f.MinInstances, f.MaxInstances)
	}
	if f.Channel.Type != "" {
		if _, err := channel.ParseType(f.Channel.Type); err != nil {
			bad("channel.type %q: want %s", f.Channel.Type, transport.Choices())
		}
	}
	if f.Channel.RequestTimeout < 0 {
		bad("channel.request_timeout may not be negative")
	}
	if h := f.Channel.HeartbeatInterval.D(); channel.CheckHeartbeatInterval(h) != nil {
		bad("channel.heartbeat_interval %s is under %s", h, channel.MinHeartbeatInterval)
	}
	if p := f.Restart.Policy; p != "" && p != RestartOnFailure && p != RestartNever {
		bad("restart.policy %q: want on-failure or never", p)
	}
	if f.Restart.InitialBackoff < 0 || f.Restart.MaxBackoff < 0 || f.StartTimeout < 0 || f.StopGrace < 0 {
		bad("durations may not be negative")
	}
	return errs
}

// validateSpec returns the problems of the function's runtime and Spec.
func (f FunctionConfig) validateSpec() []string {
	var known []string
	for _, k := range runtime.Kinds() {
		known = append(known, k.Type.String())
	}
	t, err := spear.ParseRuntimeType(f.Runtime)
	if err != nil {
		return []string{fmt.Sprintf("runtime %q: want one of %s", f.Runtime, strings.Join(known, ", "))}
	}
	if _, ok := runtime.Lookup(t); !ok {
		return []string{fmt.Sprintf("runtime %q is not built into this program, which has %s", f.Runtime, strings.Join(known, ", "))}
	}
	switch {
	case f.Spec == nil:
		return []string{fmt.Sprintf("no %s spec (FunctionConfig.Spec)", t)}
	case f.Spec.RuntimeType() != t:
		return []string{fmt.Sprintf("the spec is for the %s runtime, not %s", f.Spec.RuntimeType(), t)}
	}
	var msgs []string
	for _, err := range flatten(f.Spec.Validate()) {
		msgs = append(msgs, err.Error())
	}
	return msgs
}

// flatten lists the errors that errors.Join joined into err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
