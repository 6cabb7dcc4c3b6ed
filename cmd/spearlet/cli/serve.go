package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/buildinfo"
	"github.com/spear-go/spear/internal/telemetry"
)

// serveFlags are serve's flags; set ones win over the config file and the
// environment.
type serveFlags struct {
	config                       string
	logLevel, logFormat          string
	printConfig                  bool
	httpAddr, apiGRPCAddr        string
	socketDir, tcpAddr, grpcAddr string
	advertiseTCP, advertiseGRPC  string
	kubeconfig, kubeNamespace    string
	nodeName, wasmCacheDir       string
}

func newServeCmd(stopSignals func()) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Long: `Run the daemon: start the configured functions' instances and serve the
HTTP and gRPC APIs until SIGINT or SIGTERM, then shut down gracefully.

The configuration comes from --config (or $SPEARLET_CONFIG); without one the
embedded default runs: a process function "echo" and a wasm function
"wasm-echo". Environment variables (` + fmt.Sprint(agent.EnvVars()) + `)
override the file, and flags override both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, f, stopSignals)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "YAML config file (default $SPEARLET_CONFIG, else the embedded default)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error (also $SPEARLET_LOG_LEVEL)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text (logfmt) or json, one record per line (also $SPEARLET_LOG_FORMAT)")
	fl.BoolVar(&f.printConfig, "print-config", false, "print the effective configuration (defaults filled in) as JSON, which is valid YAML, and exit")
	fl.StringVar(&f.httpAddr, "http-addr", "", "HTTP API address (default "+agent.DefaultHTTPAddr+")")
	fl.StringVar(&f.apiGRPCAddr, "api-grpc-addr", "", "gRPC API address (default "+agent.DefaultGRPCAddr+")")
	fl.StringVar(&f.socketDir, "socket-dir", "", "directory for the instances' unix sockets (default the temp dir)")
	fl.StringVar(&f.tcpAddr, "tcp-addr", "", "listener for instances' tcp channels (default 127.0.0.1:0)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "", "listener for instances' grpc channels (default 127.0.0.1:0)")
	fl.StringVar(&f.advertiseTCP, "advertise-tcp", "", "tcp address handed to instances")
	fl.StringVar(&f.advertiseGRPC, "advertise-grpc", "", "grpc address handed to instances")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for kubernetes functions (default in-cluster)")
	fl.StringVar(&f.kubeNamespace, "kube-namespace", "", "default namespace of function pods")
	fl.StringVar(&f.nodeName, "node-name", "", "the node the agent runs on: pods go there, labelled with it, and a previous run's are deleted")
	fl.StringVar(&f.wasmCacheDir, "wasm-cache-dir", "", "directory of compiled wasm modules (default in the user's cache directory, if writable)")
	return cmd
}

func runServe(cmd *cobra.Command, f *serveFlags, stopSignals func()) error {
	path := f.config
	if path == "" {
		path = os.Getenv("SPEARLET_CONFIG")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	cfg.ApplyEnv(os.LookupEnv)
	fl := cmd.Flags()
	for _, o := range []struct {
		flag string
		dst  *string
		val  string
	}{
		{"http-addr", &cfg.API.HTTPAddr, f.httpAddr},
		{"api-grpc-addr", &cfg.API.GRPCAddr, f.apiGRPCAddr},
		{"socket-dir", &cfg.Channels.SocketDir, f.socketDir},
		{"tcp-addr", &cfg.Channels.TCPAddr, f.tcpAddr},
		{"grpc-addr", &cfg.Channels.GRPCAddr, f.grpcAddr},
		{"advertise-tcp", &cfg.Channels.AdvertiseTCP, f.advertiseTCP},
		{"advertise-grpc", &cfg.Channels.AdvertiseGRPC, f.advertiseGRPC},
		{"kubeconfig", &cfg.Kubernetes.Kubeconfig, f.kubeconfig},
		{"kube-namespace", &cfg.Kubernetes.Namespace, f.kubeNamespace},
		{"node-name", &cfg.Kubernetes.NodeName, f.nodeName},
		{"wasm-cache-dir", &cfg.Wasm.CacheDir, f.wasmCacheDir},
	} {
		if fl.Changed(o.flag) {
			*o.dst = o.val
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if f.printConfig {
		return printJSON(cmd.OutOrStdout(), cfg.WithDefaults())
	}
	level := f.logLevel
	if v := os.Getenv("SPEARLET_LOG_LEVEL"); v != "" && !fl.Changed("log-level") {
		level = v
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	format := f.logFormat
	if v := os.Getenv("SPEARLET_LOG_FORMAT"); v != "" && !fl.Changed("log-format") {
		format = v
	}
	log, err := newLogger(cmd.ErrOrStderr(), format, lv)
	if err != nil {
		return err
	}

	ctx := cmd.Context()
	// Traces, when the OTEL_* variables ask for them (docs/observability.md).
	tp, err := telemetry.NewTracerProvider(ctx, os.Getenv, "spearlet", buildinfo.Read(Version).Version)
	if err != nil {
		return err
	}
	opts := agent.RunOptions{Logger: log, Runtimes: runtimes, Version: Version}
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
	go func() {
		// A second signal during the shutdown kills the process.
		<-ctx.Done()
		if stopSignals != nil {
			stopSignals()
		}
	}()
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

// loadConfig reads the config file at path, or the default config when
// path is empty.
func loadConfig(path string) (agent.Config, error) {
	if path == "" {
		return agent.ParseConfig(defaultConfig)
	}
	return agent.LoadConfig(path)
}
