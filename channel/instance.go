package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Channel is the communication channel of exactly one runtime instance: a
// logical channel that exists before the instance connects and outlives its
// connections. Each authenticated connection runs as a session.Session; a
// newer one replaces the older. The Factory makes channels.
//
// Every method is safe for concurrent use. Errors about the instance are
// *spear.InstanceError values naming it, wrapping a spear category.
type Channel struct {
	// Immutable after construction.
	id     spear.InstanceID
	typ    Type
	cfg    Config
	secret spear.Secret
	addr   string
	tls    chantls.Instance // what the instance is told of the agent's TLS; zero without

	ln        transport.Listener // this instance's own listener, or nil on a shared one
	factory   *Factory
	stats     *stats.Counters
	log       *slog.Logger
	inboxOnce sync.Once
	inboxCh   chan wire.Frame // see inbox
	closed    chan struct{}

	conns     atomic.Int32 // connections attributed to this instance
	closeOnce sync.Once

	mu        sync.Mutex // guards the fields below; never held while closing a session
	sess      *session.Session
	connected chan struct{} // closed when sess becomes non-nil
	gone      chan struct{} // closed when sess becomes nil
}

func newChannel(f *Factory, id spear.InstanceID, typ Type, cfg Config) *Channel {
	gone := make(chan struct{})
	close(gone)
	c := &Channel{
		id:        id,
		typ:       typ,
		cfg:       cfg,
		factory:   f,
		stats:     stats.New(),
		closed:    make(chan struct{}),
		connected: make(chan struct{}),
		gone:      gone,
	}
	c.log = f.log.With("instance", id.String(), "runtime", id.Runtime.String(), "transport", string(typ))
	return c
}

// InstanceID returns the instance this channel belongs to.
func (c *Channel) InstanceID() spear.InstanceID { return c.id }

// Type returns the channel type.
func (c *Channel) Type() Type { return c.typ }

// Credentials returns what the instance needs to connect. It holds the
// instance's secret: hand it only to that instance.
func (c *Channel) Credentials() Credentials {
	return Credentials{ID: c.id, Type: c.typ, Address: c.addr, Secret: c.secret, TLS: c.tls}
}

func (c *Channel) current() (*session.Session, error) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	select {
	case <-c.closed:
		return nil, c.err("", spear.ErrChannelClosed)
	default:
		return nil, c.err("", spear.ErrNotConnected)
	}
}

func (c *Channel) err(op string, err error) error {
	if op == "" {
		op = "channel"
	}
	return spear.InstanceErr(c.id, op, err)
}

// Send writes a one-way message (typically TypeMessage or TypeSignal).
func (c *Channel) Send(ctx context.Context, m Message) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return c.err("send", err)
	}
	return c.err("send", s.Send(&wire.Frame{Type: m.Type, Payload: m.Payload}))
}

// Receive returns the next one-way message the instance sent. Once the
// channel is closed it fails with spear.ErrChannelClosed, even with
// messages left unread.
func (c *Channel) Receive(ctx context.Context) (Message, error) {
	// A closed channel says so even with messages left in the inbox.
	select {
	case <-c.closed:
		return Message{}, c.err("receive", spear.ErrChannelClosed)
	default:
	}
	select {
	case f := <-c.inbox():
		return Message{Type: f.Type, Payload: f.Payload}, nil
	case <-c.closed:
		return Message{}, c.err("receive", spear.ErrChannelClosed)
	case <-ctx.Done():
		return Message{}, c.err("receive", spear.ContextError(ctx))
	}
}

// Request sends m and waits for the answer, which is matched by request
// id, so concurrent requests do not wait on each other. An ERROR answer is
// a *spear.RemoteError. When ctx has no deadline the channel's
// RequestTimeout applies.
func (c *Channel) Request(ctx context.Context, m Message) (Message, error) {
	s, err := c.current()
	if err != nil {
		return Message{}, err
	}
	r, err := s.Request(ctx, &wire.Frame{Type: m.Type, Payload: m.Payload}, c.cfg.RequestTimeout)
	if err != nil {
		return Message{}, c.err("request", err)
	}
	return Message{Type: r.Type, Payload: r.Payload}, nil
}

// Stream sends m asking for a streamed answer.
func (c *Channel) Stream(ctx context.Context, m Message) (*Stream, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx, &wire.Frame{Type: m.Type, Payload: m.Payload})
	if err != nil {
		return nil, c.err("stream", err)
	}
	return &Stream{st: st, ch: c}, nil
}

// IsConnected reports whether an authenticated connection is bound.
func (c *Channel) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// WaitConnected waits until an authenticated connection is bound.
func (c *Channel) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ready := c.connected
	c.mu.Unlock()
	select {
	case <-c.closed:
		return c.err("wait connected", spear.ErrChannelClosed)
	default:
	}
	select {
	case <-ready:
		return nil
	case <-c.closed:
		return c.err("wait connected", spear.ErrChannelClosed)
	case <-ctx.Done():
		return c.err("wait connected", spear.ContextError(ctx))
	}
}

// Disconnected returns a channel closed when the current connection ends
// (at once when none is bound).
func (c *Channel) Disconnected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// Stats returns the channel's statistics.
func (c *Channel) Stats() stats.Snapshot { return c.stats.Snapshot() }

// Close closes the channel: pending requests fail at once with
// spear.ErrChannelClosed, the instance's connection and listening address
// go away, and the factory forgets the channel. Idempotent.
func (c *Channel) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.ln != nil {
			c.ln.Close()
		}
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		if s != nil {
			s.Close(fmt.Errorf("%w: closed by the agent", spear.ErrChannelClosed))
		}
		c.factory.forget(c)
		c.log.Info("channel closed")
	})
	return nil
}

// bind makes conn, already authenticated as this instance, the channel's
// connection. A connection bound before it is told it was replaced and
// closed; its pending requests fail with spear.ErrReplaced. The caller has
// counted conn against the connection caps; bind releases the count when
// the connection ends (or at once, when the channel is closed).
func (c *Channel) bind(conn transport.Conn, sessionID string) {
	hb := c.cfg.HeartbeatInterval
	if hb < 0 {
		hb = 0
	}
	// The session may end, and call OnClose, before session.Start even
	// returns (the peer hung up at once). So the session is started and
	// installed under c.mu, which unbind takes too: unbind then sees it
	// installed and uninstalls it, rather than leaving a dead session bound
	// (or finding none and closing gone twice).
	b := &binding{}
	c.mu.Lock()
	select {
	case <-c.closed:
		c.mu.Unlock()
		conn.Close()
		c.release()
		return
	default:
	}
	b.s = session.Start(conn, session.Config{
		Agent:             true,
		OnMessage:         c.onMessage,
		HeartbeatInterval: hb,
		HeartbeatMisses:   c.cfg.HeartbeatMisses,
		PeerMaxPayload:    wire.DefaultMaxPayload, // what the SDK reads
		StreamBuffer:      c.cfg.StreamBuffer,
		Stats:             c.stats,
		Logger:            c.log.With("session", sessionID),
		OnClose:           func(err error) { c.unbind(b, err) },
	})
	old := c.sess
	c.sess = b.s
	c.stats.Connected() // before waiters of c.connected wake
	if old == nil {
		close(c.connected)
		c.gone = make(chan struct{})
	}
	c.mu.Unlock()
	c.log.Info("instance connected", "session", sessionID, "remote", conn.Info().Remote)
	if old != nil {
		old.GoAway(spear.CodeUnavailable, "replaced by a newer connection of the same instance", spear.ErrReplaced)
	}
}

// binding is the session bind started; its field is guarded by
// Channel.mu.
type binding struct{ s *session.Session }

// admit takes a place under the instance's connection cap for a new
// connection; release gives it back.
func (c *Channel) admit() error {
	if int(c.conns.Add(1)) > c.cfg.MaxConnections {
		c.conns.Add(-1)
		return spear.InstanceErr(c.id, "accept", fmt.Errorf("%w: instance already has %d connections",
			spear.ErrTooManyConnections, c.cfg.MaxConnections))
	}
	return nil
}

// checkPeer runs the configured peer check on a new connection. Its
// refusal matches spear.ErrAuthFailed.
func (c *Channel) checkPeer(info transport.Info) error {
	if !c.tls.IsZero() {
		// Mutual TLS: the client certificate must be this instance's.
		if err := c.factory.opts.TLS.CheckPeer(info.TLS, c.id); err != nil {
			return spear.InstanceErr(c.id, "accept", err)
		}
	}
	if c.cfg.CheckPeer == nil {
		return nil
	}
	err := c.cfg.CheckPeer(info)
	if err != nil && !errors.Is(err, spear.ErrAuthFailed) {
		err = fmt.Errorf("%w: peer check: %w", spear.ErrAuthFailed, err)
	}
	return spear.InstanceErr(c.id, "accept", err)
}

// release gives back a connection's place under the instance's and the
// factory's connection caps.
func (c *Channel) release() {
	c.conns.Add(-1)
	c.factory.conns.Add(-1)
}

// unbind runs when the session of b ends.
func (c *Channel) unbind(b *binding, err error) {
	c.release()
	c.stats.Disconnected()
	c.mu.Lock()
	current := c.sess != nil && c.sess == b.s
	if current {
		c.sess = nil
		c.connected = make(chan struct{})
		close(c.gone)
	}
	c.mu.Unlock()
	switch {
	case !current, errors.Is(err, spear.ErrReplaced):
		c.log.Debug("replaced connection ended", "err", err)
	case errors.Is(err, spear.ErrChannelClosed) && !errors.Is(err, spear.ErrPeerGone):
		c.log.Info("instance disconnected", "err", err)
	default:
		c.log.Warn("instance connection lost", "err", err)
	}
}

// inbox returns the queue of one-way messages, made on first use: most
// channels never carry one, and an idle channel should cost little.
func (c *Channel) inbox() chan wire.Frame {
	c.inboxOnce.Do(func() { c.inboxCh = make(chan wire.Frame, c.cfg.InboxSize) })
	return c.inboxCh
}

func (c *Channel) onMessage(f wire.Frame) {
	select {
	case c.inbox() <- f:
	default:
		c.stats.Error(stats.KindOverflow)
		c.log.Warn("inbox full; one-way message dropped", "size", c.cfg.InboxSize)
	}
}

// Stream is a streamed answer from an instance. It is for one goroutine:
// Recv and Close must not be called concurrently (cancel the context given
// to Channel.Stream to stop a Recv from elsewhere).
type Stream struct {
	st *session.Stream
	ch *Channel
}

// Recv returns the next chunk, io.EOF after the last, or the error that
// ended the stream.
func (s *Stream) Recv() ([]byte, error) {
	b, err := s.st.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, s.ch.err("stream", err)
	}
	return b, err
}

// Close abandons the stream if it has not ended and tells the instance to
// stop. It is safe to call after the stream ended.
func (s *Stream) Close() { s.st.Close() }
