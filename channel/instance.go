package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Channel is the communication channel of exactly one runtime instance: a
// logical channel that exists before the instance connects and outlives its
// connections. Each authenticated connection runs as a session.Session.
// An instance may hold several connections at once, each in its own
// slot (its index in the handshake, docs/protocol.md section 18);
// requests go to the bound connection with the fewest requests pending,
// and a newer connection in a slot replaces the older. The Factory makes
// channels.
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

	mu        sync.Mutex    // guards the fields below; never held while closing a session
	slots     []slot        // by connection index
	bound     int           // slots with a session
	want      int           // connections the instance is asked to hold
	offered   int           // how many the instance said it can hold (1 for older instances)
	next      int           // where the search for the least loaded slot starts
	connected chan struct{} // closed when bound becomes positive
	gone      chan struct{} // closed when bound becomes 0
}

// slot is one of an instance's connections.
type slot struct {
	s        *session.Session // nil when none is bound
	features []string         // what the instance announced on s
	pending  int              // requests and streams open on it
}

// live reports whether the slot has a session that has not ended. An
// ended session stays bound for the moment its reader takes to unbind
// it; it must take no request meanwhile.
func (sl *slot) live() bool { return sl.s != nil && sl.s.Err() == nil }

// liveLocked counts the live slots.
func (c *Channel) liveLocked() int {
	n := 0
	for i := range c.slots {
		if c.slots[i].live() {
			n++
		}
	}
	return n
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
		want:      max(cfg.Connections, 1),
		offered:   1,
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

// acquire returns the bound session with the fewest open requests among
// the slots the instance is asked to hold (any bound one when none of
// those is), counting one more request on it; the caller must call done
// with the slot. Without a session the error matches spear.ErrNotSent.
func (c *Channel) acquire() (*session.Session, int, error) {
	c.mu.Lock()
	best := -1
	for pass := 0; pass < 2 && best < 0; pass++ {
		for k := range len(c.slots) {
			i := (c.next + k) % len(c.slots)
			sl := &c.slots[i]
			if !sl.live() || (pass == 0 && i >= c.want) {
				continue
			}
			if best < 0 || sl.pending < c.slots[best].pending {
				best = i
			}
		}
	}
	if best >= 0 {
		c.slots[best].pending++
		c.next = (best + 1) % len(c.slots)
		s := c.slots[best].s
		c.mu.Unlock()
		return s, best, nil
	}
	c.mu.Unlock()
	select {
	case <-c.closed:
		return nil, 0, c.err("", fmt.Errorf("%w: %w", spear.ErrNotSent, spear.ErrChannelClosed))
	default:
		return nil, 0, c.err("", fmt.Errorf("%w: %w", spear.ErrNotSent, spear.ErrNotConnected))
	}
}

// done ends a request acquire counted on slot i.
func (c *Channel) done(i int) {
	c.mu.Lock()
	if i < len(c.slots) {
		c.slots[i].pending--
	}
	c.mu.Unlock()
}

// first returns a bound session, for frames that belong to no request.
func (c *Channel) first() (*session.Session, error) {
	s, i, err := c.acquire()
	if err == nil {
		c.done(i)
	}
	return s, err
}

func (c *Channel) err(op string, err error) error {
	if op == "" {
		op = "channel"
	}
	return spear.InstanceErr(c.id, op, err)
}

// Send writes a one-way message (typically TypeMessage or TypeSignal).
func (c *Channel) Send(ctx context.Context, m Message) error {
	s, err := c.first()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return c.err("send", err)
	}
	return c.err("send", s.Send(&wire.Frame{Type: m.Type, Flags: m.Flags, Payload: m.Payload}))
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
		return Message{Type: f.Type, Flags: f.Flags, Payload: f.Payload}, nil
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
	s, i, err := c.acquire()
	if err != nil {
		return Message{}, err
	}
	r, err := c.request(ctx, s, &wire.Frame{Type: m.Type, Flags: m.Flags, Payload: m.Payload})
	c.done(i)
	if err != nil {
		return Message{}, err
	}
	return Message{Type: r.Type, Flags: r.Flags, Payload: r.Payload}, nil
}

// request sends f on session s and waits for the answer.
func (c *Channel) request(ctx context.Context, s *session.Session, f *wire.Frame) (wire.Frame, error) {
	r, err := s.Request(ctx, f, c.cfg.RequestTimeout)
	if err != nil {
		return wire.Frame{}, c.err("request", err)
	}
	return r, nil
}

// Stream sends m asking for a streamed answer.
func (c *Channel) Stream(ctx context.Context, m Message) (*Stream, error) {
	s, i, err := c.acquire()
	if err != nil {
		return nil, err
	}
	return c.stream(ctx, s, i, &wire.Frame{Type: m.Type, Flags: m.Flags, Payload: m.Payload})
}

// stream opens a stream with f on session s, which holds slot i's place
// (given back when the stream ends, or now if it does not open).
func (c *Channel) stream(ctx context.Context, s *session.Session, i int, f *wire.Frame) (*Stream, error) {
	st, err := s.OpenStream(ctx, f)
	if err != nil {
		c.done(i)
		return nil, c.err("stream", err)
	}
	return &Stream{st: st, ch: c, slot: i}, nil
}

// Features returns the optional protocol features the instance announced
// in the handshake of its first live connection (wire.FeatureSplit), or
// nil when none is bound.
func (c *Channel) Features() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.slots {
		if c.slots[i].live() {
			return slices.Clone(c.slots[i].features)
		}
	}
	return nil
}

// IsConnected reports whether an authenticated connection is bound.
func (c *Channel) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveLocked() > 0
}

// Connections returns how many authenticated connections are bound.
func (c *Channel) Connections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveLocked()
}

// Connected returns a channel closed once a connection is bound (at once
// when one is).
func (c *Channel) Connected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// HeartbeatHealth is what the heartbeats tell of an instance's
// connections: the most intervals in a row without a frame on any of
// them, and the round trip of the last probe answered on any of them
// (the figure Stats reports as HeartbeatRTT; 0 before any).
type HeartbeatHealth struct {
	Misses int
	RTT    time.Duration
}

// Heartbeat returns the heartbeat figures of the bound connections.
func (c *Channel) Heartbeat() HeartbeatHealth {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := HeartbeatHealth{RTT: c.stats.LastHeartbeatRTT()}
	for _, sl := range c.slots {
		if sl.s != nil {
			h.Misses = max(h.Misses, sl.s.HeartbeatMisses())
		}
	}
	return h
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

// Disconnected returns a channel closed when the last bound connection
// ends (at once when none is bound).
func (c *Channel) Disconnected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// Stats returns the channel's statistics.
func (c *Channel) Stats() stats.Snapshot { return c.stats.Snapshot() }

// LatencyHistogram returns the channel's request latencies counted under
// each of bounds (sorted ascending), for exporting as a histogram.
func (c *Channel) LatencyHistogram(bounds []time.Duration) stats.Histogram {
	return c.stats.LatencyHistogram(bounds)
}

// Close closes the channel: pending requests fail at once with
// spear.ErrChannelClosed, the instance's connections and listening address
// go away, and the factory forgets the channel. Idempotent.
func (c *Channel) Close() error {
	c.close(fmt.Errorf("%w: closed by the agent", spear.ErrChannelClosed))
	return nil
}

// Lost closes the channel of an instance that is gone (its process
// exited, its pod was deleted): pending requests fail with
// spear.ErrPeerGone and reason, as they do when the agent notices the
// broken connection first, so a dead instance is one category
// (spear.ErrConnectionFailed) whichever side notices first. Idempotent;
// after Close or Lost it does nothing.
func (c *Channel) Lost(reason string) {
	c.close(fmt.Errorf("%w: %s", spear.ErrPeerGone, reason))
}

func (c *Channel) close(cause error) {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.ln != nil {
			c.ln.Close()
		}
		c.mu.Lock()
		var live []*session.Session
		for _, sl := range c.slots {
			if sl.s != nil {
				live = append(live, sl.s)
			}
		}
		c.mu.Unlock()
		for _, s := range live {
			s.Close(cause)
		}
		c.factory.forget(c)
		c.log.Info("channel closed", "cause", cause)
	})
}

// bind makes conn, already authenticated as this instance, the channel's
// connection in slot i. A connection bound there before it is told it was
// replaced and closed; its pending requests fail with spear.ErrReplaced.
// The caller has counted conn against the connection caps; bind releases
// the count when the connection ends (or at once, when the channel is
// closed). peer is what the instance said in its handshake.
func (c *Channel) bind(conn transport.Conn, sessionID string, i int, peer auth.Accepted) {
	hb := c.cfg.HeartbeatInterval
	if hb < 0 {
		hb = 0
	}
	// The session may end, and call OnClose, before session.Start even
	// returns (the peer hung up at once). So the session is started and
	// installed under c.mu, which unbind takes too: unbind then sees it
	// installed and uninstalls it, rather than leaving a dead session bound
	// (or finding none and closing gone twice).
	b := &binding{slot: i}
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
		PeerSplit:         peer.Has(wire.FeatureSplit),
		StreamBuffer:      c.cfg.StreamBuffer,
		Stats:             c.stats,
		Logger:            c.log.With("session", sessionID, "connection", i),
		OnClose:           func(err error) { c.unbind(b, err) },
	})
	for len(c.slots) <= i {
		c.slots = append(c.slots, slot{})
	}
	old := c.slots[i].s
	c.slots[i].s, c.slots[i].features = b.s, peer.Features
	c.stats.Connected() // before waiters of c.connected wake
	if old == nil {
		if c.bound++; c.bound == 1 {
			close(c.connected)
			c.gone = make(chan struct{})
		}
	}
	c.mu.Unlock()
	c.log.Info("instance connected", "session", sessionID, "connection", i, "remote", conn.Info().Remote)
	if old != nil {
		old.GoAway(spear.CodeUnavailable, "replaced by a newer connection of the same instance", spear.ErrReplaced)
	}
}

// offer decides how many connections the instance is asked to hold, when
// one of its connections authenticates saying it is connection slot and
// can hold max: the channel's target, within both the instance's means
// and the channel's cap. A slot past the cap is refused.
func (c *Channel) offer(slot, most uint32) (uint32, error) {
	if int(slot) >= c.cfg.MaxConnections {
		return 0, fmt.Errorf("%w: connection %d is past the instance's cap of %d",
			spear.ErrTooManyConnections, slot, c.cfg.MaxConnections)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offered = max(int(most), 1)
	return uint32(c.targetLocked()), nil
}

// targetLocked is how many connections the instance is asked to hold.
func (c *Channel) targetLocked() int {
	return max(min(c.want, c.offered, c.cfg.MaxConnections), 1)
}

// SetConnections asks the instance to hold n connections from now on,
// within its means (its handshake's max_connections) and the channel's
// cap; an instance that holds one only is left alone. Connections past
// the new count take no new requests; the instance closes them once
// their requests are answered. It returns the count asked for.
func (c *Channel) SetConnections(ctx context.Context, n int) (int, error) {
	c.mu.Lock()
	before := c.targetLocked()
	c.want = max(n, 1)
	after, offered := c.targetLocked(), c.offered
	c.mu.Unlock()
	if after == before || offered <= 1 {
		return after, nil
	}
	b := codec.AppendSignal(nil, &codec.Signal{Kind: codec.SignalConnections, Connections: uint32(after)})
	_, err := c.Request(ctx, Message{Type: wire.TypeSignal, Payload: b})
	return after, err
}

// binding is the session bind started; its field is guarded by
// Channel.mu.
type binding struct {
	s    *session.Session
	slot int
}

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
	current := b.slot < len(c.slots) && c.slots[b.slot].s == b.s
	if current {
		c.slots[b.slot].s, c.slots[b.slot].features = nil, nil
		if c.bound--; c.bound == 0 {
			c.connected = make(chan struct{})
			close(c.gone)
		}
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
	st   *session.Stream
	ch   *Channel
	slot int
	done bool // the slot's count was given back
}

// Recv returns the next chunk, io.EOF after the last, or the error that
// ended the stream.
func (s *Stream) Recv() ([]byte, error) {
	b, err := s.st.Recv()
	if err != nil {
		s.release()
		if !errors.Is(err, io.EOF) {
			return nil, s.ch.err("stream", err)
		}
	}
	return b, err
}

// Close abandons the stream if it has not ended and tells the instance to
// stop. It is safe to call after the stream ended.
func (s *Stream) Close() {
	s.st.Close()
	s.release()
}

func (s *Stream) release() {
	if !s.done {
		s.done = true
		s.ch.done(s.slot)
	}
}
