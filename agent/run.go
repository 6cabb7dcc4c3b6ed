package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
)

// Time limits of the shutdown after the drain.
const (
	stopTimeout    = 30 * time.Second // stopping instances
	serversTimeout = 5 * time.Second  // closing API connections
)

// RunOptions configure Run.
type RunOptions struct {
	// Logger receives every log of the daemon; nil discards them.
	Logger *slog.Logger
	// Self is the executable for command "@self" (default os.Executable()).
	Self string
	// KubeClient is the Kubernetes client for kubernetes functions
	// (default: from Config.Kubernetes.Kubeconfig, else in-cluster).
	KubeClient k8s.Interface
	// Ready, when set, is called with the API's bound addresses once both
	// servers accept connections.
	Ready func(httpAddr, grpcAddr net.Addr)
}

// Run is the daemon: it creates the channel factory and the runtimes the
// functions need, an Agent, and the HTTP and gRPC API servers, and serves
// until ctx ends. Then it shuts down gracefully: invocations are refused
// with 503 / UNAVAILABLE while those in flight finish, within
// cfg.ShutdownGrace; then every instance is stopped, the runtimes and the
// factory are closed (removing sockets and temporary directories), and the
// servers stop. It returns nil after a clean shutdown.
func Run(ctx context.Context, cfg Config, opts RunOptions) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	factory, err := channel.NewFactory(channel.Options{
		SocketDir:     cfg.Channels.SocketDir,
		TCPAddr:       cfg.Channels.TCPAddr,
		GRPCAddr:      cfg.Channels.GRPCAddr,
		AdvertiseTCP:  cfg.Channels.AdvertiseTCP,
		AdvertiseGRPC: cfg.Channels.AdvertiseGRPC,
		Defaults: channel.Config{
			RequestTimeout:    cfg.Channels.RequestTimeout.D(),
			HeartbeatInterval: cfg.Channels.HeartbeatInterval.D(),
		},
		Logger: log.With("component", "channel"),
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, factory.Close()) }()

	runtimes, err := newRuntimes(cfg, factory, opts, log)
	if err != nil {
		return err
	}
	a, err := New(cfg, Options{Runtimes: runtimes, Self: opts.Self, Logger: log})
	if err != nil {
		for _, rt := range runtimes {
			_ = rt.Close(context.Background())
		}
		return err
	}
	closeAgent := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		return a.Close(ctx)
	}

	httpLn, err := net.Listen("tcp", cfg.API.HTTPAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("%w: http api: %w", spear.ErrConfig, err), closeAgent())
	}
	grpcLn, err := net.Listen("tcp", cfg.API.GRPCAddr)
	if err != nil {
		httpLn.Close()
		return errors.Join(fmt.Errorf("%w: grpc api: %w", spear.ErrConfig, err), closeAgent())
	}
	httpSrv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	grpcSrv := grpc.NewServer(grpc.MaxRecvMsgSize(cfg.MaxPayload + 64<<10))
	a.RegisterGRPC(grpcSrv)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv)

	var g errgroup.Group
	g.Go(func() error {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http api: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := grpcSrv.Serve(grpcLn); err != nil {
			return fmt.Errorf("grpc api: %w", err)
		}
		return nil
	})
	log.Info("spearlet serving", "http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(), "functions", len(cfg.Functions))
	if opts.Ready != nil {
		opts.Ready(httpLn.Addr(), grpcLn.Addr())
	}

	// Serve until asked to stop, or until a server fails.
	failed := make(chan error, 1)
	go func() { failed <- g.Wait() }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-failed:
		log.Error("api server failed; shutting down", "err", serveErr)
	}

	log.Info("shutting down", "grace", cfg.ShutdownGrace.D().String())
	healthSrv.Shutdown() // NOT_SERVING from now on
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace.D())
	if err := a.Drain(drainCtx); err != nil {
		log.Warn("shutdown grace over; stopping in-flight invocations", "err", err)
	}
	cancel()
	closeErr := closeAgent()

	srvCtx, cancel := context.WithTimeout(context.Background(), serversTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(srvCtx); err != nil {
		httpSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-srvCtx.Done():
		grpcSrv.Stop()
		<-stopped
	}
	if serveErr == nil {
		serveErr = <-failed
	}
	log.Info("spearlet stopped")
	return errors.Join(serveErr, closeErr)
}

// newRuntimes creates the runtimes the configured functions use.
func newRuntimes(cfg Config, factory *channel.Factory, opts RunOptions, log *slog.Logger) ([]runtime.Runtime, error) {
	need := map[spear.RuntimeType]bool{}
	for _, fn := range cfg.Functions {
		t, _ := spear.ParseRuntimeType(fn.Runtime)
		need[t] = true
	}
	var out []runtime.Runtime
	fail := func(err error) ([]runtime.Runtime, error) {
		for _, rt := range out {
			_ = rt.Close(context.Background())
		}
		return nil, err
	}
	for _, t := range spear.RuntimeTypes() {
		if !need[t] {
			continue
		}
		rlog := log // the runtimes add their own "runtime" attribute
		var rt runtime.Runtime
		var err error
		switch t {
		case spear.Process:
			rt, err = process.New(process.Options{Factory: factory, Logger: rlog})
		case spear.Wasm:
			dir := cfg.Wasm.CacheDir
			if dir == "" {
				dir = defaultWasmCacheDir(log)
			}
			rt, err = wasm.New(wasm.Options{Factory: factory, Logger: rlog, CacheDir: dir})
		case spear.Kubernetes:
			client := opts.KubeClient
			if client == nil {
				client, err = kubeClient(cfg.Kubernetes.Kubeconfig)
				if err != nil {
					return fail(err)
				}
			}
			rt, err = kubernetes.New(kubernetes.Options{Factory: factory, Client: client, Namespace: cfg.Kubernetes.Namespace,
				NodeName: cfg.Kubernetes.NodeName, Logger: rlog})
		}
		if err != nil {
			return fail(fmt.Errorf("%s runtime: %w", t, err))
		}
		out = append(out, rt)
	}
	return out, nil
}

// kubeClient builds a client from a kubeconfig file, or from the
// in-cluster configuration when path is empty.
func kubeClient(path string) (k8s.Interface, error) {
	var rc *rest.Config
	var err error
	if path != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes client (set kubernetes.kubeconfig or SPEARLET_KUBECONFIG outside a cluster): %w", spear.ErrConfig, err)
	}
	return k8s.NewForConfig(rc)
}

// defaultWasmCacheDir is where compiled wasm modules are kept across
// restarts when the config names no directory, so that a module is
// compiled once per machine and user rather than at every start: in the
// user's cache directory, or none when there is no such directory or it
// cannot be created (a read-only root filesystem); then modules are
// compiled in memory at every start.
func defaultWasmCacheDir(log *slog.Logger) string {
	dir, err := os.UserCacheDir()
	if err == nil {
		dir = filepath.Join(dir, "spearlet", "wasm")
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		log.Warn("no wasm compilation cache; set wasm.cache_dir to keep compiled modules across restarts", "err", err)
		return ""
	}
	return dir
}
