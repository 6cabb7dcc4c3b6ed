// Package session is the request/response layer shared by the agent's
// channels and the instance SDK, written once above every transport:
// request ids, matching responses to waiters, deadlines, cancellation,
// streams, heartbeats, statistics and close semantics.
//
// Goroutines. Each Session has exactly one reader goroutine, which owns
// ReadFrame. It hands responses to waiting callers through per-call
// buffered channels (never blocking on a slow caller), answers heartbeats,
// and hands each request the peer opens to a worker goroutine (an idle one
// if there is one, else a new one; workers exit after a second idle or
// with the session), so handlers never run on the reader. Writers call transport.Conn.WriteFrame directly; the
// transports batch concurrent writes. Heartbeats run on a timer, not a
// goroutine of their own. When the reader ends, for any reason, it fails
// every pending call with the session's error and closes Done.
package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// Handler serves requests the peer opens (EXECUTE_REQUEST and SIGNAL).
type Handler interface {
	// Serve runs on its own goroutine. ctx ends when the peer cancels the
	// request or the session ends. Replies go through r.
	Serve(ctx context.Context, req wire.Frame, r *Responder)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req wire.Frame, r *Responder)

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, req wire.Frame, r *Responder) { f(ctx, req, r) }

// Config configures a Session. Zero values mean the defaults.
type Config struct {
	// Agent selects odd request ids (the agent's); otherwise even ids (the
	// instance's).
	Agent bool
	// Handler serves requests the peer opens; nil answers them with an
	// ERROR frame of code NOT_FOUND.
	Handler Handler
	// OnMessage receives one-way MESSAGE frames. It runs on the reader and
	// must not block.
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
	// Stats receives the session's counts; nil means private counters.
	Stats *stats.Counters
	// Logger receives lifecycle logs; nil discards them.
	Logger *slog.Logger
	// OnClose is called once, on the reader goroutine, after the session
	// ended and every pending call failed.
	OnClose func(err error)
}

// Session runs the protocol over one authenticated connection.
type Session struct {
	conn   transport.Conn
	cfg    Config
	stats  *stats.Counters
	log    *slog.Logger
	nextID atomic.Uint64
	ctx    context.Context // ends when the session ends
	cancel context.CancelCauseFunc

	readerDone chan struct{}
	jobs       chan job      // hands requests to idle workers
	framesIn   atomic.Uint64 // for heartbeat liveness
	hbTimer    *time.Timer

	mu      sync.Mutex // guards the fields below
	idle    sync.Cond  // on mu; signalled when handlers drops to 0
	pending map[uint64]*call
	serving map[uint64]context.CancelFunc
	// handlers counts running handlers. It is not a sync.WaitGroup
	// because Wait may run while the reader starts new handlers.
	handlers int
	err      error  // why the session ended; set once
	hbLast   uint64 // framesIn at the last heartbeat tick
	hbMisses int    // ticks in a row without a frame
}

// callPool recycles the calls of unary requests that got their answer.
var callPool = sync.Pool{New: func() any { return &call{ch: make(chan wire.Frame, 1)} }}

// call is one request waiting for its answer. The reader is the only
// goroutine that sends on or closes ch; it sets err before closing.
type call struct {
	ch     chan wire.Frame
	stream bool
	err    error
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
		jobs:       make(chan job),
		pending:    map[uint64]*call{},
		serving:    map[uint64]context.CancelFunc{},
	}
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
	if cfg.HeartbeatInterval > 0 {
		s.mu.Lock() // heartbeat reads hbTimer under mu; it may run before Start returns
		s.hbTimer = time.AfterFunc(cfg.HeartbeatInterval, s.heartbeat)
		s.mu.Unlock()
	}
	go s.read()
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

// Close ends the session with cause (spear.ErrChannelClosed when nil):
// pending calls fail at once with it and the connection closes. It waits
// for the reader goroutine, not for handlers (see Wait). Calling it again,
// or after the session ended, does nothing.
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
// which wakes the reader to fail everything pending.
func (s *Session) end(cause error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = cause
	}
	s.mu.Unlock()
	s.conn.Close()
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

// Request sends f (its ID is assigned here) and waits for the answering
// frame. An ERROR answer becomes a *spear.RemoteError. The wait ends early
// when ctx ends (a CANCEL frame then tells the peer), after timeout when
// ctx has no deadline and timeout is positive, or when the session ends.
func (s *Session) Request(ctx context.Context, f *wire.Frame, timeout time.Duration) (wire.Frame, error) {
	c, err := s.register(f, false)
	if err != nil {
		return wire.Frame{}, notSent(err)
	}
	// A default timeout uses a pooled timer rather than a derived context:
	// this is the common case, and it is on every request's path.
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok && timeout > 0 {
		t := getTimer(timeout)
		defer putTimer(t)
		expired = t.C
	}
	start := time.Now()
	if err := s.write(f); err != nil {
		s.forget(f.ID)
		return wire.Frame{}, notSent(err)
	}
	select {
	case r, ok := <-c.ch:
		if !ok {
			s.stats.Error(stats.KindClosed)
			return wire.Frame{}, c.err
		}
		s.stats.Latency(time.Since(start))
		// The one answer was taken and the call left the pending map
		// when it was delivered: nothing refers to c any more.
		callPool.Put(c)
		return r, codec.FrameError(r)
	case <-ctx.Done():
		return wire.Frame{}, s.abandon(ctx, f.ID)
	case <-expired:
		if s.forget(f.ID) {
			s.sendCancel(f.ID)
		}
		s.stats.Error(stats.KindTimeout)
		return wire.Frame{}, fmt.Errorf("%w: request %d: no answer within %s", spear.ErrTimeout, f.ID, timeout)
	}
}

// notSent marks the error of a request that was not written: the session
// had ended, or the transport did not take the whole frame. The peer
// cannot have acted on it.
func notSent(err error) error {
	if errors.Is(err, spear.ErrNotSent) {
		return err
	}
	return fmt.Errorf("%w: %w", spear.ErrNotSent, err)
}

var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and pools it. Since Go 1.23 a stopped timer's channel
// holds no stale tick, so Reset after Get is safe.
func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// Send writes a frame that expects no answer.
func (s *Session) Send(f *wire.Frame) error { return s.write(f) }

// OpenStream sends f, which asks for a streamed answer, and returns the
// stream of answering frames.
func (s *Session) OpenStream(ctx context.Context, f *wire.Frame) (*Stream, error) {
	c, err := s.register(f, true)
	if err != nil {
		return nil, notSent(err)
	}
	if err := s.write(f); err != nil {
		s.forget(f.ID)
		return nil, notSent(err)
	}
	return &Stream{s: s, c: c, id: f.ID, ctx: ctx}, nil
}

// Stream is the answer to a streaming request. Recv is for one goroutine.
type Stream struct {
	s    *Session
	c    *call
	id   uint64
	ctx  context.Context
	done bool
}

// Recv returns the next STREAM_DATA payload, io.EOF after the last one, or
// the error that ended the stream (the peer's ERROR frame as a
// *spear.RemoteError, spear.ErrStreamOverflow, the session's error, or
// the context's).
func (st *Stream) Recv() ([]byte, error) {
	if st.done {
		return nil, io.EOF
	}
	select {
	case f, ok := <-st.c.ch:
		if !ok {
			st.done = true
			return nil, st.c.err
		}
		if err := codec.FrameError(f); err != nil {
			st.done = true
			return nil, err
		}
		if f.Flags&wire.FlagEnd != 0 || f.Type != wire.TypeStreamData {
			st.done = true
			if len(f.Payload) == 0 {
				return nil, io.EOF
			}
		}
		return f.Payload, nil
	case <-st.ctx.Done():
		st.done = true
		return nil, st.s.abandon(st.ctx, st.id)
	}
}

// Close abandons the stream if it has not ended, telling the peer to stop.
func (st *Stream) Close() {
	if !st.done {
		st.done = true
		if st.s.forget(st.id) {
			st.s.sendCancel(st.id)
		}
	}
}

func (s *Session) register(f *wire.Frame, stream bool) (*call, error) {
	var c *call
	if stream {
		c = &call{ch: make(chan wire.Frame, s.cfg.StreamBuffer), stream: true}
	} else {
		c = callPool.Get().(*call)
	}
	f.ID = s.nextID.Add(2)
	if stream {
		f.Flags |= wire.FlagStream
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return nil, s.err
	}
	s.pending[f.ID] = c
	return c, nil
}

// forget removes a pending call and reports whether it was still pending.
func (s *Session) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	return ok
}

// abandon gives up on request id because ctx ended, and tells the peer.
func (s *Session) abandon(ctx context.Context, id uint64) error {
	if s.forget(id) {
		s.sendCancel(id)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.stats.Error(stats.KindTimeout)
		return fmt.Errorf("%w: request %d: %w", spear.ErrTimeout, id, ctx.Err())
	}
	s.stats.Error(stats.KindCanceled)
	return fmt.Errorf("request %d: %w", id, ctx.Err())
}

func (s *Session) sendCancel(id uint64) {
	_ = s.write(&wire.Frame{Type: wire.TypeCancel, ID: id})
}

// write sends one frame; a failed write ends the session, since the
// connection is out of step after it.
func (s *Session) write(f *wire.Frame) error {
	if n := len(f.Payload); s.cfg.PeerMaxPayload > 0 && n > int(s.cfg.PeerMaxPayload) {
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

// read is the reader goroutine.
func (s *Session) read() {
	err := s.readLoop()
	s.finish(err)
}

func (s *Session) readLoop() error {
	for {
		f, err := s.conn.ReadFrame()
		if err != nil {
			s.refuse(err)
			return err
		}
		s.framesIn.Add(1)
		s.stats.Received(f.Size())
		switch f.Type {
		case wire.TypeExecuteResponse, wire.TypeStreamData, wire.TypeError:
			s.deliver(f)
		case wire.TypeExecuteRequest, wire.TypeSignal:
			s.serve(f)
		case wire.TypeCancel:
			s.mu.Lock()
			cancel := s.serving[f.ID]
			s.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		case wire.TypeHeartbeat:
			if f.Flags&wire.FlagAck == 0 {
				_ = s.write(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: f.ID, Payload: f.Payload})
			} else if rtt, ok := probeRTT(f.Payload); ok {
				s.stats.HeartbeatRTT(rtt)
			}
		case wire.TypeMessage:
			if s.cfg.OnMessage != nil {
				s.cfg.OnMessage(f)
			}
		case wire.TypeClose:
			_, reason, _ := codec.DecodeClose(f.Payload) // an undecodable reason is still a goodbye
			return &peerClosedError{reason: reason}
		default: // handshake frames after the handshake
			err := fmt.Errorf("%w: unexpected %s frame after the handshake", spear.ErrInvalidMessage, f.Type)
			_ = s.conn.WriteFrame(codec.ErrorFrame(0, spear.CodeInvalidMessage, err.Error()))
			return err
		}
	}
}

// refuse tells the peer which of its frames broke the protocol, before the
// connection closes (docs/protocol.md, "Errors").
func (s *Session) refuse(err error) {
	if f, ok := codec.Refusal(err); ok {
		_ = s.conn.WriteFrame(f)
	}
}

// deliver hands an answering frame to its waiting call.
func (s *Session) deliver(f wire.Frame) {
	terminal := f.Type != wire.TypeStreamData || f.Flags&wire.FlagEnd != 0
	s.mu.Lock()
	c := s.pending[f.ID]
	if c == nil { // a late answer to an abandoned request
		s.mu.Unlock()
		return
	}
	if terminal || !c.stream {
		delete(s.pending, f.ID)
	}
	s.mu.Unlock()
	if f.Type == wire.TypeError {
		s.stats.Error(stats.KindRemote)
	}
	if !c.stream {
		c.ch <- f // capacity 1, and only one answer is delivered
		return
	}
	select {
	case c.ch <- f:
		if terminal {
			close(c.ch)
		}
	default:
		if !terminal && !s.forget(f.ID) {
			return
		}
		s.stats.Error(stats.KindOverflow)
		c.err = fmt.Errorf("%w: stream %d held %d unread chunks", spear.ErrStreamOverflow, f.ID, cap(c.ch))
		close(c.ch)
		s.sendCancel(f.ID)
	}
}

// serve starts a handler for a request the peer opened.
func (s *Session) serve(f wire.Frame) {
	if s.cfg.Handler == nil {
		if f.ID != 0 {
			_ = s.write(codec.ErrorFrame(f.ID, spear.CodeNotFound, "no handler for "+f.Type.String()))
		}
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	_, dup := s.serving[f.ID]
	if f.ID != 0 && dup {
		s.mu.Unlock()
		cancel()
		_ = s.write(codec.ErrorFrame(f.ID, spear.CodeInvalidMessage, fmt.Sprintf("request id %d is already in use", f.ID)))
		return
	}
	if f.ID != 0 {
		s.serving[f.ID] = cancel
	}
	s.handlers++
	s.mu.Unlock()
	j := job{ctx: ctx, cancel: cancel, f: f}
	select {
	case s.jobs <- j: // an idle worker takes it
	default:
		go s.worker(j)
	}
}

// job is one request for a worker to serve.
type job struct {
	ctx    context.Context
	cancel context.CancelFunc
	f      wire.Frame
}

// workerIdle is how long a worker waits for another request before it
// exits. Reusing workers keeps their grown stacks, which a fresh goroutine
// per request would have to grow again every time.
const workerIdle = time.Second

// worker serves j, then further requests handed over s.jobs, until it has
// been idle for workerIdle or the session ends.
func (s *Session) worker(j job) {
	var idle *time.Timer
	for {
		s.run(j)
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		case <-s.readerDone:
			idle.Stop()
			return
		}
	}
}

func (s *Session) run(j job) {
	defer j.cancel()
	s.cfg.Handler.Serve(j.ctx, j.f, &Responder{s: s, id: j.f.ID})
	s.mu.Lock()
	if j.f.ID != 0 {
		delete(s.serving, j.f.ID)
	}
	if s.handlers--; s.handlers == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// finish runs on the reader after it stopped: it settles the session's
// error, fails every pending call and cancels every handler.
func (s *Session) finish(readErr error) {
	if s.hbTimer != nil {
		s.hbTimer.Stop()
	}
	s.mu.Lock()
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
	for _, cancel := range s.serving {
		cancel()
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

// Responder answers one request the peer opened.
type Responder struct {
	s  *Session
	id uint64
}

// ID returns the request id; 0 for a one-way signal, whose answers are
// dropped.
func (r *Responder) ID() uint64 { return r.id }

// Send writes f as an answer to the request.
func (r *Responder) Send(f *wire.Frame) error {
	if r.id == 0 {
		return nil
	}
	f.ID = r.id
	return r.s.write(f)
}

// Error answers the request with an ERROR frame.
func (r *Responder) Error(code spear.Code, msg string) error {
	return r.Send(codec.ErrorFrame(0, code, msg))
}
