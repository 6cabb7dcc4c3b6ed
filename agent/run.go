package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/leftover"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/runtime"
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
	// Runtimes are the runtimes the daemon can serve, by type; Run builds
	// those that its functions use. A function whose runtime is missing
	// makes Run fail with spear.ErrUnsupportedRuntime. cmd/spearlet
	// chooses them.
	Runtimes map[spear.RuntimeType]NewRuntime
	// State is the daemon's state directory, open and locked; the caller
	// keeps it and closes it after Run. Nil: Run opens Config.StateDir
	// itself, before anything else, and closes it on return. Before it
	// starts anything, Run cleans up what an earlier agent on it left
	// behind (internal/leftover), and records there what it starts.
	State *statedir.Dir
	// Ready, when set, is called with the API's bound addresses once its
	// servers accept connections; an address turned off is nil.
	Ready func(httpAddr, grpcAddr net.Addr)
	// Load reads the configuration again for a reload (the API's reload,
	// and each value on Reload); nil: the daemon cannot reload. serve
	// passes what it started with: the file, the environment and the
	// flags.
	Load func() (Config, error)
	// Reload asks for a reload; serve sends on it at each SIGHUP.
	Reload <-chan struct{}
	// TracerProvider turns tracing on (Options.TracerProvider); the
	// caller owns it and shuts it down after Run returns.
	TracerProvider trace.TracerProvider
	// Version is the daemon's version (Options.Version).
	Version string
}

// reloadTimeout bounds a reload that Reload asked for: the new instances'
// starts and the old ones' drain.
const reloadTimeout = 5 * time.Minute

// NewRuntime builds one runtime for Run. Run owns what it returns and
// closes it on shutdown.
type NewRuntime func(RuntimeEnv) (runtime.Runtime, error)

// RuntimeEnv is what Run hands a NewRuntime.
type RuntimeEnv struct {
	// Factory is the daemon's channel factory; it outlives the runtime.
	Factory *channel.Factory
	// Config is the daemon's configuration, defaults filled in.
	Config Config
	// Logger is the daemon's logger; runtimes add their own attributes.
	Logger *slog.Logger
	// Leftovers records what the runtime starts that could outlive the
	// agent; nil records nothing.
	Leftovers *leftover.Book
}

// Run is the daemon. In order, it takes its state directory (a second
// agent on the same one fails here), binds the API's listeners (a second
// agent on the same ports fails here, before it starts anything), then
// creates the channel factory and the runtimes the functions need, an
// Agent, and serves the HTTP and gRPC APIs until ctx ends. Then it shuts
// down gracefully: invocations are refused with 503 / UNAVAILABLE while
// those in flight finish, within cfg.ShutdownGrace; then every instance
// is stopped, the runtimes and the factory are closed (removing sockets
// and temporary directories), and the servers stop. It returns nil after
// a clean shutdown. Each value on opts.Reload, and each POST /v1/reload,
// reads the configuration again with opts.Load and applies it
// (Agent.Reload).
func Run(ctx context.Context, cfg Config, opts RunOptions) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	state := opts.State
	if state == nil {
		if state, err = statedir.Open(cfg.StateDir); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, state.Close()) }()
	}
	srv, err := listenAPI(cfg.API, state)
	if err != nil {
		return err
	}
	// What a dead agent on the same state directory left goes before
	// anything starts.
	book, err := leftover.Open(state, log.With("component", "leftover"))
	if err != nil {
		srv.closeListeners()
		return fmt.Errorf("%w: state directory: %w", spear.ErrConfig, err)
	}
	defer func() {
		if cerr := book.Close(); cerr != nil {
			log.Warn("records of what this run started remain for the next start", "err", cerr)
		}
	}()
	tlsAgent, err := chantls.Load(state, chantls.Config{
		Mode:       chantls.Mode(cfg.Channels.TLS.Mode),
		CertFile:   cfg.Channels.TLS.CertFile,
		KeyFile:    cfg.Channels.TLS.KeyFile,
		CAFile:     cfg.Channels.TLS.CAFile,
		ServerName: cfg.Channels.TLS.ServerName,
	})
	if err != nil {
		srv.closeListeners()
		return err
	}
	factory, err := channel.NewFactory(channel.Options{
		Leftovers:     book,
		SocketDir:     cfg.Channels.SocketDir,
		TCPAddr:       cfg.Channels.TCPAddr,
		GRPCAddr:      cfg.Channels.GRPCAddr,
		AdvertiseTCP:  cfg.Channels.AdvertiseTCP,
		AdvertiseGRPC: cfg.Channels.AdvertiseGRPC,
		TLS:           tlsAgent,
		Defaults: channel.Config{
			RequestTimeout:    cfg.Channels.RequestTimeout.D(),
			HeartbeatInterval: cfg.Channels.HeartbeatInterval.D(),
			AuthTimeout:       cfg.Channels.AuthTimeout.D(),
		},
		Logger: log.With("component", "channel"),
	})
	if err != nil {
		srv.closeListeners()
		return err
	}
	defer func() { err = errors.Join(err, factory.Close()) }()

	env := RuntimeEnv{Factory: factory, Config: cfg, Logger: log, Leftovers: book}
	runtimes, err := newRuntimes(env, opts.Runtimes)
	if err != nil {
		srv.closeListeners()
		return err
	}
	a, err := New(cfg, Options{
		Runtimes:       runtimes,
		Logger:         log,
		TracerProvider: opts.TracerProvider,
		Version:        opts.Version,
		Load:           opts.Load,
		NewRuntime: func(t spear.RuntimeType) (runtime.Runtime, error) {
			build, ok := opts.Runtimes[t]
			if !ok {
				return nil, fmt.Errorf("%w: this spearlet does not run the %s runtime", spear.ErrUnsupportedRuntime, t)
			}
			return build(env)
		},
	})
	if err != nil {
		srv.closeListeners()
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

	var g errgroup.Group
	srv.start(a, log, &g)
	// Per-function health (spear.function.<name>) and readiness (""),
	// kept current until the shutdown begins.
	healthCtx, stopHealth := context.WithCancel(context.Background())
	healthDone := make(chan struct{})
	go func() { defer close(healthDone); a.watchHealth(healthCtx, srv.health) }()
	httpAddr, grpcAddr, socket := srv.addrs()
	log.Info("spearlet serving", "http", addrString(httpAddr), "grpc", addrString(grpcAddr), "socket", addrString(socket),
		"state_dir", state.Path(), "functions", len(cfg.Functions))
	if opts.Ready != nil {
		opts.Ready(httpAddr, grpcAddr)
	}

	// Serve until asked to stop, or until a server fails; reload when
	// asked to.
	failed := make(chan error, 1)
	go func() { failed <- g.Wait() }()
	var serveErr error
	var reloads sync.WaitGroup
	defer reloads.Wait()
serve:
	for {
		select {
		case <-ctx.Done():
			break serve
		case serveErr = <-failed:
			log.Error("api server failed; shutting down", "err", serveErr)
			break serve
		case <-opts.Reload:
			log.Info("reloading the configuration")
			reloads.Go(func() {
				rctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
				defer cancel()
				_, _ = a.ReloadConfig(rctx) // the agent logs the outcome
			})
		}
	}

	grace := a.Config().ShutdownGrace.D()
	log.Info("shutting down", "grace", grace.String())
	stopHealth()
	<-healthDone
	srv.health.Shutdown() // NOT_SERVING from now on
	drainCtx, cancel := context.WithTimeout(context.Background(), grace)
	if err := a.Drain(drainCtx); err != nil {
		log.Warn("shutdown grace over; stopping in-flight invocations", "err", err)
	}
	cancel()
	closeErr := closeAgent()

	srvCtx, cancel := context.WithTimeout(context.Background(), serversTimeout)
	defer cancel()
	if err := srv.http.Shutdown(srvCtx); err != nil {
		srv.http.Close()
	}
	stopped := make(chan struct{})
	go func() { srv.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-srvCtx.Done():
		srv.grpc.Stop()
		<-stopped
	}
	if serveErr == nil {
		serveErr = <-failed
	}
	log.Info("spearlet stopped")
	return errors.Join(serveErr, closeErr)
}

// addrString is a for the log, "none" when nil.
func addrString(a net.Addr) string {
	if a == nil {
		return addrNone
	}
	return a.String()
}

// newRuntimes builds the runtimes that env.Config's functions use.
func newRuntimes(env RuntimeEnv, builders map[spear.RuntimeType]NewRuntime) ([]runtime.Runtime, error) {
	need := map[spear.RuntimeType]bool{}
	for _, fn := range env.Config.Functions {
		t, _ := spear.ParseRuntimeType(fn.Runtime) // validated
		need[t] = true
	}
	var out []runtime.Runtime
	fail := func(err error) ([]runtime.Runtime, error) {
		for _, rt := range out {
			_ = rt.Close(context.Background())
		}
		return nil, err
	}
	for _, t := range slices.Sorted(maps.Keys(need)) {
		build, ok := builders[t]
		if !ok {
			return fail(fmt.Errorf("%w: this spearlet does not run the %s runtime", spear.ErrUnsupportedRuntime, t))
		}
		rt, err := build(env)
		if err != nil {
			return fail(fmt.Errorf("%s runtime: %w", t, err))
		}
		out = append(out, rt)
	}
	return out, nil
}
