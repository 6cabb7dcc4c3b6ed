package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"

	// The transports an instance has without asking: grpc, which links
	// grpc-go, is added by importing transport/grpc.
	_ "github.com/spear-go/spear/transport/memory"
	_ "github.com/spear-go/spear/transport/tcp"
	_ "github.com/spear-go/spear/transport/unix"
)

// Signal is a signal from the agent other than terminate.
type Signal struct {
	Kind spearpb.SignalKind
	Name string // for custom signals
	Data []byte
}

// Options configure an Instance. Empty connection fields are read from the
// SPEAR_* environment variables.
type Options struct {
	// Handler serves execute requests. Required.
	Handler Handler
	// OnSignal handles pause, resume and custom signals. Nil means the
	// defaults: pause makes new requests fail with CodeUnavailable until
	// resume; custom signals are answered with CodeNotFound. Terminate is
	// always handled by the SDK: in-flight requests finish (new ones get
	// CodeUnavailable), then Serve returns nil.
	OnSignal func(ctx context.Context, s Signal) error
	// OnMessage receives one-way messages from the agent. It must not block.
	OnMessage func(payload []byte)
	// Logger receives the SDK's logs; nil discards them.
	Logger *slog.Logger

	ID     spear.InstanceID
	Secret spear.Secret
	// Channel is the transport's name: unix, tcp or memory, or grpc in a
	// program that imports github.com/spear-go/spear/transport/grpc (see
	// the package documentation).
	Channel string
	Address string

	// HandshakeTimeout bounds dialing and authenticating (default 10s).
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 50ms and 5s); the wait doubles, with jitter.
	MinBackoff, MaxBackoff time.Duration
}

// FromEnv fills the connection fields of o from the environment. Reading
// the secret (SPEAR_SECRET_FD, SPEAR_SECRET_FILE or SPEAR_SECRET, in that
// order; docs/protocol.md) first makes the process non-dumpable on Linux,
// so that other processes of its user cannot read the secret out of it.
func (o *Options) FromEnv() error {
	var err error
	if o.ID.IsZero() {
		if o.ID, err = spear.ParseInstanceID(os.Getenv(spear.EnvInstanceID)); err != nil {
			return fmt.Errorf("%w: %s: %w", spear.ErrConfig, spear.EnvInstanceID, err)
		}
	}
	if o.Secret == nil {
		if err := protectSecret(); err != nil {
			return err
		}
		if o.Secret, err = auth.SecretFromEnv(); err != nil {
			return err
		}
	}
	if o.Channel == "" {
		o.Channel = os.Getenv(spear.EnvChannel)
	}
	if o.Address == "" {
		o.Address = os.Getenv(spear.EnvAddress)
	}
	if o.Address == "" {
		return fmt.Errorf("%w: %s is not set", spear.ErrConfig, spear.EnvAddress)
	}
	return nil
}

// Instance is a running instance's connection to its agent.
type Instance struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	sess    *session.Session
	paused  bool
	stopped chan struct{} // closed by a terminate signal
	stopOne sync.Once
	// lastServed is the request id of the terminate signal: requests with
	// lower ids were sent before it and still run. Handlers run on
	// workers, so a request that arrived first may reach its check after
	// the signal was handled.
	lastServed uint64
}

// New returns an instance; connection fields left empty in opts come from
// the environment.
func New(opts Options) (*Instance, error) {
	if opts.Handler == nil {
		return nil, fmt.Errorf("%w: sdk.Options.Handler is required", spear.ErrInvalidConfig)
	}
	if err := opts.FromEnv(); err != nil {
		return nil, err
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Instance{
		opts:    opts,
		log:     log.With("instance", opts.ID.String(), "transport", opts.Channel),
		stopped: make(chan struct{}),
	}, nil
}

// Serve connects, authenticates and serves requests until ctx ends or the
// agent sends a terminate signal (then it returns nil after in-flight
// requests finish). When the connection is lost it reconnects with
// backoff. A failed authentication is final: it returns an error matching
// spear.ErrAuthFailed.
func (in *Instance) Serve(ctx context.Context) error {
	backoff := in.opts.MinBackoff
	for {
		connected, err := in.serveOnce(ctx)
		switch {
		case in.terminated():
			return nil
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, spear.ErrAuthFailed), errors.Is(err, spear.ErrUnsupportedTransport):
			return err
		}
		if connected {
			backoff = in.opts.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		in.log.Info("connection to agent lost; reconnecting", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		case <-in.stopped:
			return nil
		}
		backoff = min(backoff*2, in.opts.MaxBackoff)
	}
}

// serveOnce runs one connection; connected reports whether it got past
// the handshake.
func (in *Instance) serveOnce(ctx context.Context) (connected bool, err error) {
	hctx, cancel := context.WithTimeout(ctx, in.opts.HandshakeTimeout)
	defer cancel()
	conn, err := Dial(hctx, in.opts.Channel, in.opts.Address)
	if err != nil {
		return false, err
	}
	resp, err := auth.Connect(hctx, conn, in.opts.ID, in.opts.Secret)
	if err != nil {
		conn.Close()
		return false, err
	}
	// Start under mu, so that Send works from the first request on.
	in.mu.Lock()
	sess := session.Start(conn, session.Config{
		Handler:           session.HandlerFunc(in.serve),
		OnMessage:         in.onMessage,
		HeartbeatInterval: msDuration(uint64(resp.HeartbeatIntervalMs)),
		PeerMaxPayload:    resp.MaxPayload,
		Logger:            in.log,
	})
	in.sess = sess
	in.mu.Unlock()
	in.log.Info("connected to agent", "session", resp.SessionID)
	select {
	case <-sess.Done():
	case <-ctx.Done():
		sess.GoAway(spear.CodeUnavailable, "instance shutting down", nil)
	case <-in.stopped:
		// Terminate: let in-flight requests finish, then say goodbye.
		sess.Wait()
		sess.GoAway(spear.CodeUnavailable, "instance terminated", nil)
	}
	sess.Close(nil)
	sess.Wait()
	in.mu.Lock()
	in.sess = nil
	in.mu.Unlock()
	return true, sess.Err()
}

func (in *Instance) terminated() bool {
	select {
	case <-in.stopped:
		return true
	default:
		return false
	}
}

// Send sends a one-way message to the agent, which reads it with
// channel.Channel.Receive.
func (in *Instance) Send(payload []byte) error {
	in.mu.Lock()
	s := in.sess
	in.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: not connected to the agent", spear.ErrNotConnected)
	}
	return s.Send(&wire.Frame{Type: wire.TypeMessage, Payload: payload})
}

func (in *Instance) onMessage(f wire.Frame) {
	if in.opts.OnMessage != nil {
		in.opts.OnMessage(f.Payload)
	}
}

// serve dispatches one request the agent opened.
func (in *Instance) serve(ctx context.Context, f wire.Frame, r *session.Responder) {
	switch f.Type {
	case wire.TypeExecuteRequest:
		// terminated is read before lastServed, which is set first.
		draining := in.terminated()
		in.mu.Lock()
		paused, last := in.paused, in.lastServed
		in.mu.Unlock()
		switch {
		case draining && f.ID > last:
			// Draining: only requests already running may finish.
			_ = r.Error(spear.CodeUnavailable, "instance is terminating")
			return
		case paused:
			_ = r.Error(spear.CodeUnavailable, "instance is paused")
			return
		}
		serveExecute(ctx, in.opts.Handler, f, r)
	case wire.TypeSignal:
		in.signal(ctx, f, r)
	}
}

func (in *Instance) signal(ctx context.Context, f wire.Frame, r *session.Responder) {
	m, err := codec.DecodeSignal(f.Payload)
	if err != nil {
		_ = r.Error(spear.CodeInvalidMessage, err.Error())
		return
	}
	s := Signal{Kind: spearpb.SignalKind(m.Kind), Name: m.Name, Data: m.Data}
	in.log.Info("signal from agent", "kind", s.Kind.String(), "name", s.Name)
	switch {
	case s.Kind == spearpb.SignalKind_SIGNAL_KIND_TERMINATE:
		// Draining starts before the acknowledgement leaves, so that a
		// request the agent sends once it has the ack is refused.
		in.stopOne.Do(func() {
			in.mu.Lock()
			in.lastServed = f.ID
			in.mu.Unlock()
			close(in.stopped)
		})
		_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse})
		return
	case in.opts.OnSignal != nil:
		err = in.opts.OnSignal(ctx, s)
	case s.Kind == spearpb.SignalKind_SIGNAL_KIND_PAUSE, s.Kind == spearpb.SignalKind_SIGNAL_KIND_RESUME:
		in.mu.Lock()
		in.paused = s.Kind == spearpb.SignalKind_SIGNAL_KIND_PAUSE
		in.mu.Unlock()
	default:
		err = Error(spear.CodeNotFound, fmt.Sprintf("no handler for signal %s %q", s.Kind, s.Name))
	}
	if err != nil {
		_ = r.Error(codec.HandlerError(ctx, err))
		return
	}
	_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse})
}

// Dial opens a transport connection of the named channel type, one of the
// transports linked into the program. An unknown one is an error matching
// spear.ErrUnsupportedTransport.
func Dial(ctx context.Context, channelType, addr string) (transport.Conn, error) {
	return transport.Dial(ctx, channelType, addr, transport.DialConfig{})
}

func msDuration(ms uint64) time.Duration { return time.Duration(ms) * time.Millisecond }
