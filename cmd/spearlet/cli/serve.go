package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/statedir"
)

// serveFlags are serve's flags; set ones win over the config file and the
// environment.
type serveFlags struct {
	config                       string
	logLevel                     string
	printConfig                  bool
	httpAddr, apiGRPCAddr        string
	socketDir, tcpAddr, grpcAddr string
	advertiseTCP, advertiseGRPC  string
	kubeconfig, kubeNamespace    string
	nodeName, wasmCacheDir       string
	stateDir                     string
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
	fl.StringVar(&f.stateDir, "state-dir", "", "the agent's private state directory (default "+statedir.Default()+")")
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
		{"state-dir", &cfg.StateDir, f.stateDir},
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
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))

	ctx := cmd.Context()
	go func() {
		// A second signal during the shutdown kills the process.
		<-ctx.Done()
		if stopSignals != nil {
			stopSignals()
		}
	}()
	// The state directory comes first: a second agent on it stops here,
	// before it binds or starts anything.
	state, err := statedir.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer state.Close()
	return agent.Run(ctx, cfg, agent.RunOptions{Logger: log, Runtimes: runtimes, State: state})
}

// loadConfig reads the config file at path, or the default config when
// path is empty.
func loadConfig(path string) (agent.Config, error) {
	if path == "" {
		return agent.ParseConfig(defaultConfig)
	}
	return agent.LoadConfig(path)
}
