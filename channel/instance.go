package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// instanceChannel is the one implementation of Channel: a logical channel
// to one instance that outlives its connections. Each authenticated
// connection runs as a session.Session; a newer one replaces the older.
type instanceChannel struct {
	// Immutable after construction.
	id        spear.InstanceID
	typ       Type
	cfg       Config
	secret    spear.Secret
	addr      string
	ln        transport.Listener // this instance's own listener, or nil on a shared one
	factory   *Factory
	stats     *stats.Counters
	log       *slog.Logger
	inboxOnce sync.Once
	inboxCh   chan wire.Frame // see inbox
	closed    chan struct{}

	expectPID atomic.Int64 // 0: any peer
	conns     atomic.Int32 // connections attributed to this instance
	closeOnce sync.Once

	mu        sync.Mutex // guards the fields below; never held while closing a session
	sess      *session.Session
	connected chan struct{} // closed when sess becomes non-nil
	gone      chan struct{} // closed when sess becomes nil
}

var _ Channel = (*instanceChannel)(nil)

func newInstanceChannel(f *Factory, id spear.InstanceID, typ Type, cfg Config) *instanceChannel {
	gone := make(chan struct{})
	close(gone)
	c := &instanceChannel{
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

func (c *instanceChannel) InstanceID() spear.InstanceID { return c.id }
func (c *instanceChannel) Type() Type                   { return c.typ }
func (c *instanceChannel) ExpectPID(pid int)            { c.expectPID.Store(int64(pid)) }

func (c *instanceChannel) Credentials() Credentials {
	return Credentials{ID: c.id, Type: c.typ, Address: c.addr, Secret: c.secret}
}

func (c *instanceChannel) current() (*session.Session, error) {
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

func (c *instanceChannel) err(op string, err error) error {
	if op == "" {
		op = "channel"
	}
	return spear.InstanceErr(c.id, op, err)
}

func (c *instanceChannel) Send(ctx context.Context, m Message) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return c.err("send", err)
	}
	return c.err("send", s.Send(&wire.Frame{Type: m.Type, Payload: m.Payload}))
}

func (c *instanceChannel) Receive(ctx context.Context) (Message, error) {
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
		return Message{}, c.err("receive", ctxErr(ctx))
	}
}

func (c *instanceChannel) Request(ctx context.Context, m Message) (Message, error) {
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

func (c *instanceChannel) Stream(ctx context.Context, m Message) (*Stream, error) {
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

func (c *instanceChannel) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

func (c *instanceChannel) WaitConnected(ctx context.Context) error {
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
		return c.err("wait connected", ctxErr(ctx))
	}
}

func (c *instanceChannel) Disconnected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

func (c *instanceChannel) Stats() stats.Snapshot { return c.stats.Snapshot() }

// defaultRequestTimeout is the timeout Request applies when the context
// has no deadline; Execute tells the instance about it.
func (c *instanceChannel) defaultRequestTimeout() time.Duration { return c.cfg.RequestTimeout }

func (c *instanceChannel) Close() error {
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
func (c *instanceChannel) bind(conn transport.Conn, sessionID string) {
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
// instanceChannel.mu.
type binding struct{ s *session.Session }

// admit takes a place under the instance's connection cap for a new
// connection; release gives it back.
func (c *instanceChannel) admit() error {
	if int(c.conns.Add(1)) > c.cfg.MaxConnections {
		c.conns.Add(-1)
		return spear.InstanceErr(c.id, "accept", fmt.Errorf("%w: instance already has %d connections",
			spear.ErrTooManyConnections, c.cfg.MaxConnections))
	}
	return nil
}

// release gives back a connection's place under the instance's and the
// factory's connection caps.
func (c *instanceChannel) release() {
	c.conns.Add(-1)
	c.factory.conns.Add(-1)
}

// unbind runs when the session of b ends.
func (c *instanceChannel) unbind(b *binding, err error) {
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
func (c *instanceChannel) inbox() chan wire.Frame {
	c.inboxOnce.Do(func() { c.inboxCh = make(chan wire.Frame, c.cfg.InboxSize) })
	return c.inboxCh
}

func (c *instanceChannel) onMessage(f wire.Frame) {
	select {
	case c.inbox() <- f:
	default:
		c.stats.Error(stats.ErrOverflow)
		c.log.Warn("inbox full; one-way message dropped", "size", c.cfg.InboxSize)
	}
}

// Stream is a streamed answer from an instance. It is for one goroutine:
// Recv and Close must not be called concurrently (cancel the context given
// to Channel.Stream to stop a Recv from elsewhere).
type Stream struct {
	st *session.Stream
	ch *instanceChannel
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

func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", spear.ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}
