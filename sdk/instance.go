package sdk

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/chantls"
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
	// TracerProvider, when set, opens a spear.handler span around each
	// handler call, a child of the agent's span. Without it the handler's
	// context still carries the agent's trace context, so the function's
	// own spans join the agent's trace (see Handler).
	TracerProvider trace.TracerProvider

	ID     spear.InstanceID
	Secret spear.Secret
	// Channel is the transport's name: unix, tcp or memory, or grpc in a
	// program that imports github.com/spear-go/spear/transport/grpc (see
	// the package documentation).
	Channel string
	Address string
	// TLS, for a network channel (tcp, grpc), dials with TLS. FromEnv
	// builds it from the SPEAR_TLS_* variables, which the agent sets when
	// its channels use TLS: it then accepts only the agent's certificate
	// and, in mutual mode, presents the instance's own.
	TLS *tls.Config

	// HandshakeTimeout bounds dialing and authenticating (default 10s).
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 50ms and 5s); the wait doubles, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxConnections is how many connections the instance offers to hold
	// (default DefaultMaxConnections); the agent says how many it wants
	// (docs/protocol.md, section 18). 1 keeps one connection.
	MaxConnections int
}

// DefaultMaxConnections is how many connections an instance offers the
// agent by default; the agent's own cap (4 by default) usually binds
// first.
const DefaultMaxConnections = 16

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
	if o.TLS == nil {
		if o.TLS, err = chantls.FromEnv(os.Getenv).ClientConfig(o.Secret, o.Address); err != nil {
			return err
		}
	}
	return nil
}

// Instance is a running instance's connection to its agent.
type Instance struct {
	opts Options
	log  *slog.Logger

	slots sync.WaitGroup  // the goroutines of connections past the first
	ctx   context.Context // Serve's, for the connections a signal opens

	mu      sync.Mutex
	conns   map[int]*conn // by connection index
	kept    map[int]bool  // indexes past 0 with a goroutine keeping them
	target  int           // connections the agent asks for
	surplus chan struct{} // closed, and replaced, when target falls
	paused  bool
	stopped chan struct{} // closed by a terminate signal
	stopOne sync.Once
}

// conn is one of the instance's connections to the agent.
type conn struct {
	sess *session.Session
	// seen is the highest request id served on it; last, once the
	// terminate signal arrived, the highest id allowed to run: requests
	// sent before the signal still run. Handlers run on workers, so a
	// request that arrived first may reach its check after the signal
	// was handled.
	seen, last uint64
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
	if opts.TLS != nil {
		if tr, err := transport.Lookup(opts.Channel); err == nil && !tr.TLS {
			return nil, fmt.Errorf("%w: TLS is set for a %s channel, which has none", spear.ErrConfig, opts.Channel)
		}
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
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Handler = traced(opts.Handler, opts.TracerProvider)
	return &Instance{
		opts:    opts,
		log:     log.With("instance", opts.ID.String(), "transport", opts.Channel),
		stopped: make(chan struct{}),
		conns:   map[int]*conn{},
		kept:    map[int]bool{},
		target:  1,
		surplus: make(chan struct{}),
	}, nil
}

// Serve connects, authenticates and serves requests until ctx ends or the
// agent sends a terminate signal (then it returns nil after in-flight
// requests finish). When the agent asks for more than one connection, it
// opens them, and keeps each as it keeps the first. When a connection is
// lost it reconnects with backoff. A failed authentication is final: it
// returns an error matching spear.ErrAuthFailed.
func (in *Instance) Serve(ctx context.Context) error {
	in.mu.Lock()
	in.ctx = ctx
	in.mu.Unlock()
	err := in.keep(ctx, 0)
	in.slots.Wait()
	return err
}

// keep holds connection k until the instance ends or, for k > 0, the
// agent no longer wants it.
func (in *Instance) keep(ctx context.Context, k int) error {
	backoff := in.opts.MinBackoff
	for {
		if k > 0 && !in.wanted(k) {
			return nil // the agent asked for fewer while this one was away
		}
		connected, err := in.serveOnce(ctx, k)
		switch {
		case in.terminated():
			return nil
		case ctx.Err() != nil:
			return nil
		case k > 0 && !in.wanted(k):
			return nil
		case errors.Is(err, spear.ErrAuthFailed), errors.Is(err, spear.ErrUnsupportedTransport):
			return err
		}
		if connected {
			backoff = in.opts.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		in.log.Info("connection to agent lost; reconnecting", "connection", k, "err", err, "in", wait)
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

// wanted reports whether the agent still asks for connection k.
func (in *Instance) wanted(k int) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return k < in.target
}

// setTarget records how many connections the agent asks for, opens those
// missing and has the surplus ones close once their requests are done.
func (in *Instance) setTarget(ctx context.Context, n int) {
	n = max(min(n, in.opts.MaxConnections), 1)
	in.mu.Lock()
	defer in.mu.Unlock()
	if n < in.target {
		close(in.surplus)
		in.surplus = make(chan struct{})
	}
	in.target = n
	for k := 1; k < n; k++ {
		if in.kept[k] {
			continue // its goroutine runs (or is finishing, and will see it is wanted again)
		}
		in.kept[k] = true
		in.slots.Add(1)
		go func() {
			defer in.slots.Done()
			for {
				err := in.keep(ctx, k)
				in.mu.Lock()
				// Asked for again while it was finishing: keep it.
				again := err == nil && k < in.target && ctx.Err() == nil && !in.terminated()
				if !again {
					delete(in.kept, k)
				}
				in.mu.Unlock()
				if !again {
					if err != nil {
						in.log.Warn("connection ended", "connection", k, "err", err)
					}
					return
				}
			}
		}()
	}
}

// serveOnce runs one connection in slot k; connected reports whether it
// got past the handshake.
func (in *Instance) serveOnce(ctx context.Context, k int) (connected bool, err error) {
	hctx, cancel := context.WithTimeout(ctx, in.opts.HandshakeTimeout)
	defer cancel()
	tc, err := transport.Dial(hctx, in.opts.Channel, in.opts.Address, transport.DialConfig{TLS: in.opts.TLS})
	if err != nil {
		return false, err
	}
	resp, err := auth.ConnectSlot(hctx, tc, in.opts.ID, in.opts.Secret,
		auth.Slot{Connection: uint32(k), MaxConnections: uint32(in.opts.MaxConnections)}, wire.FeatureSplit)
	if err != nil {
		tc.Close()
		return false, err
	}
	// Start under mu, so that Send works from the first request on.
	c := &conn{}
	in.mu.Lock()
	c.sess = session.Start(tc, session.Config{
		Handler: session.HandlerFunc(func(ctx context.Context, f wire.Frame, r *session.Responder) {
			in.serve(ctx, c, f, r)
		}),
		OnMessage:         in.onMessage,
		HeartbeatInterval: msDuration(uint64(resp.HeartbeatIntervalMs)),
		PeerMaxPayload:    resp.MaxPayload,
		Logger:            in.log.With("connection", k),
	})
	in.conns[k] = c
	surplus := in.surplus
	in.mu.Unlock()
	sess := c.sess
	in.log.Info("connected to agent", "session", resp.SessionID, "connection", k)
	in.setTarget(ctx, int(max(resp.Connections, 1)))
	for done := false; !done; {
		select {
		case <-sess.Done():
			done = true
		case <-ctx.Done():
			sess.GoAway(spear.CodeUnavailable, "instance shutting down", nil)
			done = true
		case <-in.stopped:
			// Terminate: let in-flight requests finish, then say goodbye.
			sess.Wait()
			sess.GoAway(spear.CodeUnavailable, "instance terminated", nil)
			done = true
		case <-surplus:
			in.mu.Lock()
			surplus = in.surplus
			in.mu.Unlock()
			if k > 0 && !in.wanted(k) {
				// The agent sends nothing more here: finish, then go.
				sess.Wait()
				sess.GoAway(spear.CodeUnavailable, "surplus connection", nil)
				done = true
			}
		}
	}
	sess.Close(nil)
	sess.Wait()
	in.mu.Lock()
	if in.conns[k] == c {
		delete(in.conns, k)
	}
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
	var s *session.Session
	for k := range in.target {
		if c := in.conns[k]; c != nil && s == nil {
			s = c.sess
		}
	}
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

// serve dispatches one request the agent opened on c.
func (in *Instance) serve(ctx context.Context, c *conn, f wire.Frame, r *session.Responder) {
	switch f.Type {
	case wire.TypeExecuteRequest:
		// terminated is read before last, which is set first.
		draining := in.terminated()
		in.mu.Lock()
		c.seen = max(c.seen, f.ID)
		paused, last := in.paused, c.last
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
		in.signal(ctx, c, f, r)
	}
}

func (in *Instance) signal(ctx context.Context, c *conn, f wire.Frame, r *session.Responder) {
	m, err := codec.DecodeSignal(f.Payload)
	if err != nil {
		_ = r.Error(spear.CodeInvalidMessage, err.Error())
		return
	}
	s := Signal{Kind: spearpb.SignalKind(m.Kind), Name: m.Name, Data: bytes.Clone(m.Data)} // the frame goes back to the pool
	in.log.Info("signal from agent", "kind", s.Kind.String(), "name", s.Name)
	switch {
	case s.Kind == spearpb.SignalKind_SIGNAL_KIND_TERMINATE:
		// Draining starts before the acknowledgement leaves, so that a
		// request the agent sends once it has the ack is refused.
		in.stopOne.Do(func() {
			in.mu.Lock()
			for _, x := range in.conns {
				x.last = x.seen // what the agent sent on the others before it
			}
			c.last = f.ID
			in.mu.Unlock()
			close(in.stopped)
		})
		_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse})
		return
	case s.Kind == spearpb.SignalKind_SIGNAL_KIND_CONNECTIONS:
		_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse})
		in.mu.Lock()
		serveCtx := in.ctx
		in.mu.Unlock()
		in.setTarget(serveCtx, int(m.Connections))
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
