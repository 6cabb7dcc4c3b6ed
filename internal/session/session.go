// Package session is the request/response layer shared by the agent's
// channels and the instance SDK, written once above every transport:
// request ids, matching responses to waiters, deadlines, cancellation,
// streams, heartbeats, statistics and close semantics.
//
// Goroutines. One goroutine at a time reads the connection: it holds the
// session's read token. Usually that is a reader goroutine of the
// session's own, but a caller waiting alone for its answer takes the token
// and reads the answer itself (leader/follower), so an uncontended round
// trip costs no hand-off between goroutines; only callers that find the
// token taken wait for the holder to hand their answers over, through
// per-call buffered channels (the holder never blocks on a slow caller).
// Callers lead only on connections whose reads a deadline can interrupt
// (transport.ReadDeadliner), since a leading caller must stop reading when
// its own deadline passes.
//
// A reader that reads a request the peer opened runs its handler itself
// when no other handler is running; if the handler is still running after
// a short budget, another reader takes over the connection (a parked one,
// or a new one), so a slow handler never holds up the connection. With
// handlers already running, the reader hands the token on first and then
// runs the handler. Readers that lose the token park and exit after a
// second without work. Writers call transport.Conn.WriteFrame directly;
// the transports batch concurrent writes. Heartbeats run on a timer, not a
// goroutine of their own. Whichever goroutine finds the connection ended
// fails every pending call with the session's error and closes Done.
package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// DefaultHeartbeatMisses is how many heartbeat intervals may pass without a
// frame from the peer before the session fails.
const DefaultHeartbeatMisses = 3

// DefaultStreamBuffer is how many unread chunks a stream holds before it is
// cancelled as too slow.
const DefaultStreamBuffer = 256

// Config configures a Session. Zero values mean the defaults.
type Config struct {
	// Agent selects odd request ids (the agent's); otherwise even ids (the
	// instance's).
	Agent bool
	// Handler serves requests the peer opens; nil answers them with an
	// ERROR frame of code NOT_FOUND.
	Handler Handler
	// OnMessage receives one-way MESSAGE frames. It runs on the goroutine
	// reading the connection and must not block. The frame is its to keep.
	OnMessage func(wire.Frame)
	// HeartbeatInterval is how often to probe an idle peer; 0 disables
	// heartbeats (used for in-process instances).
	HeartbeatInterval time.Duration
	// HeartbeatMisses is how many intervals without any frame from the peer
	// fail the session with spear.ErrHeartbeatTimeout.
	HeartbeatMisses int
	// StreamBuffer bounds unread chunks per stream.
	StreamBuffer int
	// PeerMaxPayload is the largest payload the peer accepts; a larger
	// frame is refused with a *wire.FrameTooLargeError before it is sent,
	// and the session goes on. 0 means no check.
	PeerMaxPayload uint32
	// PeerSplit says the peer reads execute frames with wire.FlagSplit (it
	// announced wire.FeatureSplit in the handshake).
	PeerSplit bool
	// Stats receives the session's counts; nil means private counters.
	Stats *stats.Counters
	// Logger receives lifecycle logs; nil discards them.
	Logger *slog.Logger
	// OnClose is called once, after the session ended and every pending
	// call failed, on the goroutine that found the end.
	OnClose func(err error)
}

// Session runs the protocol over one authenticated connection.
type Session struct {
	conn   transport.Conn
	dl     transport.ReadDeadliner // conn, when its reads can be interrupted; else nil
	cfg    Config
	stats  *stats.Counters
	log    *slog.Logger
	nextID atomic.Uint64
	ctx    context.Context // ends when the session ends
	cancel context.CancelCauseFunc

	readerDone chan struct{}
	grant      chan struct{} // hands the read token to a parked reader
	framesIn   atomic.Uint64 // for heartbeat liveness
	hbTimer    *time.Timer
	grace      *time.Timer // gives a freed token to a reader
	takeover   *time.Timer // hands the token on from a slow inline handler

	mu      sync.Mutex // guards the fields below
	idle    sync.Cond  // on mu; signalled when handlers drops to 0
	pending map[uint64]*call
	serving map[uint64]*request
	// handlers counts running handlers. It is not a sync.WaitGroup
	// because Wait may run while new handlers start.
	handlers int
	err      error  // why the session ended; set once
	ended    bool   // finish has run
	hbLast   uint64 // framesIn at the last heartbeat tick
	hbMisses int    // ticks in a row without a frame
	token    tokenState
}

// Start begins serving conn, which must already be authenticated.
func Start(conn transport.Conn, cfg Config) *Session {
	if cfg.HeartbeatMisses <= 0 {
		cfg.HeartbeatMisses = DefaultHeartbeatMisses
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	s := &Session{
		conn:       conn,
		cfg:        cfg,
		stats:      cfg.Stats,
		log:        cfg.Logger,
		readerDone: make(chan struct{}),
		grant:      make(chan struct{}, 1),
		pending:    map[uint64]*call{},
		serving:    map[uint64]*request{},
	}
	s.dl, _ = conn.(transport.ReadDeadliner)
	s.idle.L = &s.mu
	if s.stats == nil {
		s.stats = stats.New()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Agent {
		s.nextID.Store(0) // first id 2
	} else {
		s.nextID.Store(^uint64(0)) // first id 1
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.mu.Lock() // the timers' functions read them under mu; they may run before Start returns
	if cfg.HeartbeatInterval > 0 {
		s.hbTimer = time.AfterFunc(cfg.HeartbeatInterval, s.heartbeat)
	}
	epoch, _ := s.grantLocked() // nobody is parked yet
	s.mu.Unlock()
	go s.reader(epoch)
	return s
}

// Context returns a context that ends, with the session's error as its
// cause, when the session ends.
func (s *Session) Context() context.Context { return s.ctx }

// Done is closed when the session has ended and every pending call failed.
func (s *Session) Done() <-chan struct{} { return s.readerDone }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Conn returns the connection the session runs on.
func (s *Session) Conn() transport.Conn { return s.conn }

// Stats returns the counters the session updates.
func (s *Session) Stats() *stats.Counters { return s.stats }

// PeerSplit reports whether the peer reads execute frames with
// wire.FlagSplit.
func (s *Session) PeerSplit() bool { return s.cfg.PeerSplit }

// Close ends the session with cause (spear.ErrChannelClosed when nil):
// pending calls fail at once with it and the connection closes. It waits
// until the session has ended, not for handlers (see Wait). Calling it
// again, or after the session ended, does nothing.
func (s *Session) Close(cause error) {
	if cause == nil {
		cause = spear.ErrChannelClosed
	}
	s.end(cause)
	<-s.readerDone
}

// Wait waits until no handler of a request the peer opened is running.
// While the session runs, the peer may open more requests after it
// returns; once Done is closed, none can start.
func (s *Session) Wait() {
	s.mu.Lock()
	for s.handlers > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// end records the cause (the first one wins) and closes the connection,
// which makes whoever reads it fail everything pending. When nobody holds
// the read token, a reader is started to find the end.
func (s *Session) end(cause error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = cause
	}
	s.mu.Unlock()
	s.conn.Close()
	s.mu.Lock()
	if s.token.holder == holderNone && !s.ended {
		s.grantAndUnlock()
		return
	}
	s.mu.Unlock()
}

// GoAway tells the peer this side is closing (a CLOSE frame with reason),
// then ends the session with cause.
func (s *Session) GoAway(code spear.Code, reason string, cause error) {
	if cause == nil {
		cause = spear.ErrChannelClosed
	}
	// Record the cause first: the peer may hang up as soon as it reads
	// CLOSE, and pending calls must fail with cause, not as a lost peer.
	s.mu.Lock()
	if s.err == nil {
		s.err = cause
	}
	s.mu.Unlock()
	_ = s.write(&wire.Frame{Type: wire.TypeClose, Payload: codec.AppendClose(nil, code, reason)})
	s.Close(cause)
}

// Send writes a frame that expects no answer.
func (s *Session) Send(f *wire.Frame) error { return s.write(f) }

// write sends one frame; a failed write ends the session, since the
// connection is out of step after it.
func (s *Session) write(f *wire.Frame) error {
	if n := f.Len(); s.cfg.PeerMaxPayload > 0 && n > int(s.cfg.PeerMaxPayload) {
		// The peer would drop the whole connection for it; refuse this
		// one frame instead.
		s.stats.Error(stats.KindSend)
		return fmt.Errorf("%w: %s: %w", spear.ErrSendFailed, f.Type,
			&wire.FrameTooLargeError{Length: uint32(min(n, math.MaxUint32)), Max: s.cfg.PeerMaxPayload})
	}
	if err := s.conn.WriteFrame(f); err != nil {
		if cause := s.Err(); cause != nil {
			return cause
		}
		s.stats.Error(stats.KindSend)
		// The writer learns its frame was not sent; the requests pending
		// on the connection learn it was lost, as when the reader
		// notices first.
		s.end(fmt.Errorf("%w: %w", spear.ErrPeerGone, err))
		return fmt.Errorf("%w: %s: %w", spear.ErrSendFailed, f.Type, err)
	}
	s.stats.Sent(f.Size())
	return nil
}

// finish runs once, on the goroutine that found the connection ended: it
// settles the session's error, fails every pending call and cancels every
// handler.
func (s *Session) finish(readErr error) {
	if s.hbTimer != nil {
		s.hbTimer.Stop()
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.token.holder = holderNone
	// The read token's timers have no more work: a callback already
	// running finds the session ended.
	if s.grace != nil {
		s.grace.Stop()
	}
	if s.takeover != nil {
		s.takeover.Stop()
	}
	if s.err == nil {
		switch {
		case errors.Is(readErr, spear.ErrInvalidMessage), isPeerClosed(readErr):
			s.err = readErr
		case errors.Is(readErr, spear.ErrChannelClosed):
			s.err = fmt.Errorf("%w: %w", spear.ErrPeerGone, readErr)
		default:
			s.err = fmt.Errorf("%w: %w", spear.ErrReceiveFailed, readErr)
		}
		switch {
		case errors.Is(readErr, spear.ErrInvalidMessage):
			s.stats.Error(stats.KindInvalid)
		case !errors.Is(readErr, spear.ErrChannelClosed):
			s.stats.Error(stats.KindReceive)
		}
	}
	err := s.err
	pending := s.pending
	s.pending = nil
	for _, r := range s.serving {
		r.ctx.cancel()
	}
	s.mu.Unlock()
	s.conn.Close()
	s.cancel(err)
	for _, c := range pending {
		c.err = err
		close(c.ch)
	}
	s.log.Debug("session ended", "err", err)
	if s.cfg.OnClose != nil {
		s.cfg.OnClose(err)
	}
	close(s.readerDone)
}

// peerClosedError ends a session whose peer said goodbye with a CLOSE
// frame: an orderly end, unlike a connection that just broke.
type peerClosedError struct{ reason string }

func (e *peerClosedError) Error() string {
	return "spear: channel closed: peer closed the connection: " + e.reason
}

func (e *peerClosedError) Is(target error) bool { return target == spear.ErrChannelClosed }

func isPeerClosed(err error) bool {
	var pc *peerClosedError
	return errors.As(err, &pc)
}

// heartbeat runs every interval on a timer: it fails the session after too
// many silent intervals, and probes the peer when it has been quiet.
func (s *Session) heartbeat() {
	select {
	case <-s.readerDone:
		return
	default:
	}
	seen := s.framesIn.Load()
	s.mu.Lock()
	if s.hbLast == seen {
		s.hbMisses++
	} else {
		s.hbLast, s.hbMisses = seen, 0
	}
	misses := s.hbMisses
	s.mu.Unlock()
	if misses >= s.cfg.HeartbeatMisses {
		s.stats.Error(stats.KindHeartbeat)
		s.end(fmt.Errorf("%w: no frame in %d intervals of %s", spear.ErrHeartbeatTimeout, misses, s.cfg.HeartbeatInterval))
		return
	}
	if misses > 0 {
		_ = s.write(&wire.Frame{Type: wire.TypeHeartbeat, Payload: probePayload()})
	}
	s.mu.Lock()
	s.hbTimer.Reset(s.cfg.HeartbeatInterval)
	s.mu.Unlock()
}

// HeartbeatMisses returns how many heartbeat intervals in a row have
// passed without a frame from the peer (a probe goes out after the
// first). The probes' round trip is in the session's counters
// (stats.Counters.HeartbeatRTT).
func (s *Session) HeartbeatMisses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hbMisses
}

// probeEpoch is the clock that heartbeat probes carry, so that the echoed
// payload tells the probe's round trip without remembering probes.
var probeEpoch = time.Now()

// probePayload is a probe's payload: the monotonic nanoseconds since
// probeEpoch, 8 bytes big-endian (docs/protocol.md allows any payload).
func probePayload() []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(time.Since(probeEpoch)))
}

// probeRTT returns the round trip of the probe whose acknowledgement
// echoed p. A payload that is not one of this process's probes (another
// length, or a time in the future or over a minute ago) yields false.
func probeRTT(p []byte) (time.Duration, bool) {
	if len(p) != 8 {
		return 0, false
	}
	rtt := time.Since(probeEpoch) - time.Duration(binary.BigEndian.Uint64(p))
	return rtt, rtt >= 0 && rtt < time.Minute
}
