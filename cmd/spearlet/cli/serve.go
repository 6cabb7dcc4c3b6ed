package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/internal/buildinfo"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/internal/telemetry"
)

// serveFlags are serve's flags; set ones win over the config file and the
// environment.
type serveFlags struct {
	config      string
	logLevel    string
	logFormat   string
	printConfig string
	settings    map[string]*string // by flag name, the settings below
}

// settingFlag is a flag of serve that sets one string of the
// configuration. The listener flags are named after the configuration's
// sections (api.*, channels.*), so that the API's addresses and the ones
// instances connect to cannot be mixed up; old names the flag replaced
// still work, hidden, with a warning.
type settingFlag struct {
	name, old string
	usage     string
	field     func(*agent.Config) *string
}

var settingFlags = []settingFlag{
	{"state-dir", "", "private state directory: API socket and token, TLS keys, lock, records for cleanup after a crash (default " + statedir.Default() + ")", func(c *agent.Config) *string { return &c.StateDir }},
	{"api-socket", "", "the API's unix socket (default " + api.SocketName + " in the state directory; none: no socket)", func(c *agent.Config) *string { return &c.API.Socket }},
	{"api-http-addr", "http-addr", "HTTP API address (default " + agent.DefaultHTTPAddr + "; none: the socket only)", func(c *agent.Config) *string { return &c.API.HTTPAddr }},
	{"api-grpc-addr", "", "gRPC API address (default " + agent.DefaultGRPCAddr + ")", func(c *agent.Config) *string { return &c.API.GRPCAddr }},
	{"channels-socket-dir", "socket-dir", "where instances' unix sockets go (default the temporary directory)", func(c *agent.Config) *string { return &c.Channels.SocketDir }},
	{"channels-tcp-addr", "tcp-addr", "listener instances connect to over tcp (default " + agent.DefaultChannelAddr + ")", func(c *agent.Config) *string { return &c.Channels.TCPAddr }},
	{"channels-grpc-addr", "grpc-addr", "listener instances connect to over grpc, not the API (default " + agent.DefaultChannelAddr + ")", func(c *agent.Config) *string { return &c.Channels.GRPCAddr }},
	{"channels-advertise-tcp", "advertise-tcp", "tcp address handed to instances, when it differs from the listener's", func(c *agent.Config) *string { return &c.Channels.AdvertiseTCP }},
	{"channels-advertise-grpc", "advertise-grpc", "grpc address handed to instances, when it differs from the listener's", func(c *agent.Config) *string { return &c.Channels.AdvertiseGRPC }},
	{"kubeconfig", "", "kubeconfig for kubernetes functions (default in-cluster)", func(c *agent.Config) *string { return &c.Kubernetes.Kubeconfig }},
	{"kube-namespace", "", "default namespace of function pods", func(c *agent.Config) *string { return &c.Kubernetes.Namespace }},
	{"node-name", "", "the node the agent runs on: pods go there, labelled with it, and a previous run's are deleted", func(c *agent.Config) *string { return &c.Kubernetes.NodeName }},
	{"wasm-cache-dir", "", "directory of compiled wasm modules (default in the user's cache directory, if writable)", func(c *agent.Config) *string { return &c.Wasm.CacheDir }},
}

func newServeCmd(stopSignals func()) *cobra.Command {
	f := &serveFlags{settings: map[string]*string{}}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Long: `Run the daemon: start the configured functions' instances and serve the
HTTP and gRPC APIs until SIGINT or SIGTERM, then shut down gracefully.
SIGHUP (or "spearlet reload") reads the configuration again and applies it
without a restart.

The configuration comes from --config (or $SPEARLET_CONFIG); without one the
embedded default runs: a process function "echo" and a wasm function
"wasm-echo". Environment variables (` + fmt.Sprint(agent.EnvVars()) + `)
override the file, and flags override both. --print-config prints the
result, defaults filled in and secrets hidden.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, f, stopSignals)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "YAML config file (default $SPEARLET_CONFIG, else the embedded default)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error (also $SPEARLET_LOG_LEVEL)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text (logfmt) or json, one record per line (also $SPEARLET_LOG_FORMAT)")
	_ = cmd.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	fl.StringVar(&f.printConfig, "print-config", "", "print the effective configuration, as yaml (the default) or json, and exit")
	fl.Lookup("print-config").NoOptDefVal = "yaml"
	_ = cmd.RegisterFlagCompletionFunc("print-config", cobra.FixedCompletions([]string{"yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	for _, s := range settingFlags {
		v := new(string)
		f.settings[s.name] = v
		fl.StringVar(v, s.name, "", s.usage)
		if s.old != "" {
			fl.StringVar(v, s.old, "", s.usage)
			_ = fl.MarkDeprecated(s.old, "use --"+s.name+" (the listener flags are named after their config section)")
		}
	}
	return cmd
}

func runServe(cmd *cobra.Command, f *serveFlags, stopSignals func()) error {
	// Catch SIGHUP first: from here on it reloads instead of killing.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	load := func() (agent.Config, error) { return f.load(cmd) }
	cfg, err := load()
	if err != nil {
		return err
	}
	if f.printConfig != "" {
		if cfg.Wasm.CacheDir == "" {
			cfg.Wasm.CacheDir, _ = defaultWasmCacheDir()
		}
		if err := cfg.WithDefaults().Print(cmd.OutOrStdout(), f.printConfig); err != nil {
			return usagef(cmd, "--print-config: %v", err)
		}
		return nil
	}
	level := f.logLevel
	if v := os.Getenv("SPEARLET_LOG_LEVEL"); v != "" && !cmd.Flags().Changed("log-level") {
		level = v
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return usagef(cmd, "--log-level %q: want debug, info, warn or error", level)
	}
	format := f.logFormat
	if v := os.Getenv("SPEARLET_LOG_FORMAT"); v != "" && !cmd.Flags().Changed("log-format") {
		format = v
	}
	log, err := newLogger(cmd.ErrOrStderr(), format, lv)
	if err != nil {
		return usagef(cmd, "%v", err)
	}

	// The state directory first: a second agent on it stops here, before
	// it binds or starts anything.
	state, err := statedir.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer state.Close()

	ctx := cmd.Context()
	opts := agent.RunOptions{Logger: log, Runtimes: runtimes, Version: Version}
	// Traces, when the OTEL_* variables ask for them (docs/observability.md).
	tp, err := telemetry.NewTracerProvider(ctx, os.Getenv, "spearlet", buildinfo.Read(Version).Version)
	if err != nil {
		return err
	}
	if tp != nil {
		opts.TracerProvider = tp
		log.Info("tracing on: exporting spans over OTLP")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				log.Warn("flushing the last spans failed", "err", err)
			}
		}()
	}
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				// A second signal during the shutdown kills the process.
				if stopSignals != nil {
					stopSignals()
				}
				return
			}
		}
	}()
	opts.State, opts.Load, opts.Reload = state, load, reload
	return agent.Run(ctx, cfg, opts)
}

// newLogger returns the daemon's logger: text (logfmt) or json records on
// w, at level and above.
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// load reads the configuration as serve runs it: the file (or the
// embedded default), then the environment, then the flags that are set.
// The file's relative paths are its directory's; those of the
// environment and the flags are the working directory's, as whoever
// typed them expects. A reload reads it again so.
func (f *serveFlags) load(cmd *cobra.Command) (agent.Config, error) {
	path := f.config
	if path == "" {
		path = os.Getenv("SPEARLET_CONFIG")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return cfg, err
	}
	cfg.ApplyEnv(os.LookupEnv)
	fl := cmd.Flags()
	for _, s := range settingFlags {
		if fl.Changed(s.name) || s.old != "" && fl.Changed(s.old) {
			*s.field(&cfg) = *f.settings[s.name]
		}
	}
	// Without a working directory (removed), relative paths stay so and
	// fail where they are used.
	if wd, err := os.Getwd(); err == nil {
		cfg = cfg.ResolvePaths(wd)
	}
	return cfg, cfg.Validate()
}

// loadConfig reads the config file at path, or the default config when
// path is empty.
func loadConfig(path string) (agent.Config, error) {
	if path == "" {
		return agent.ParseConfig(defaultConfig)
	}
	return agent.LoadConfig(path)
}
