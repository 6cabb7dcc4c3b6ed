package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/wire"
)

// callPool recycles the calls of unary requests that got their answer.
var callPool = sync.Pool{New: func() any { return &call{ch: make(chan wire.Frame, 1)} }}

// call is one request waiting for its answer. The goroutine holding the
// read token is the only one that sends on or closes ch; it sets err
// before closing.
type call struct {
	ch     chan wire.Frame
	f      wire.Frame // the request being sent, here so it needs no allocation of its own
	stream bool
	err    error
}

// Request sends f (its ID is assigned here) and waits for the answering
// frame, whose payload is the caller's (see wire.Frame on releasing it).
// An ERROR answer becomes a *spear.RemoteError. The wait ends early when
// ctx ends (a CANCEL frame then tells the peer), after timeout when ctx
// has no deadline and timeout is positive, or when the session ends.
//
// When no other goroutine is reading the connection, the caller reads its
// answer itself (see the package documentation).
func (s *Session) Request(ctx context.Context, f *wire.Frame, timeout time.Duration) (wire.Frame, error) {
	c := callPool.Get().(*call)
	c.f = *f
	lead, epoch, err := s.register(c, false)
	if err != nil {
		c.f = wire.Frame{}
		callPool.Put(c)
		return wire.Frame{}, notSent(err)
	}
	id := c.f.ID
	f.ID = id
	start := time.Now()
	err = s.write(&c.f)
	c.f = wire.Frame{} // the transport is done with the caller's bytes
	if err != nil {
		s.forget(id)
		if lead {
			s.release(epoch)
		}
		return wire.Frame{}, notSent(err)
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline && timeout > 0 {
		deadline = start.Add(timeout)
	}
	if lead {
		return s.lead(ctx, c, id, epoch, start, deadline, hasDeadline, timeout)
	}
	return s.follow(ctx, c, id, start, hasDeadline, timeout)
}

// follow waits for the goroutine holding the read token to hand over the
// answer to call c.
func (s *Session) follow(ctx context.Context, c *call, id uint64, start time.Time, hasDeadline bool, timeout time.Duration) (wire.Frame, error) {
	// A default timeout uses a pooled timer rather than a derived context:
	// this is the common case, and it is on every request's path.
	var expired <-chan time.Time
	if !hasDeadline && timeout > 0 {
		t := getTimer(timeout)
		defer putTimer(t)
		expired = t.C
	}
	select {
	case r, ok := <-c.ch:
		if !ok {
			s.stats.Error(stats.KindClosed)
			return wire.Frame{}, c.err
		}
		return s.answered(c, r, start)
	case <-ctx.Done():
		return wire.Frame{}, s.abandon(ctx, id)
	case <-expired:
		return wire.Frame{}, s.expire(id, timeout)
	}
}

// lead reads the connection until the answer to call c arrives, handling
// every other frame as a reader would, then passes the read token on.
func (s *Session) lead(ctx context.Context, c *call, id, epoch uint64, start, deadline time.Time, hasDeadline bool, timeout time.Duration) (wire.Frame, error) {
	if ctx.Done() != nil {
		// The read must end when ctx does, not only at the deadline.
		stop := context.AfterFunc(ctx, s.interruptRead)
		defer stop()
	}
	for {
		s.armReadDeadline(deadline)
		if ctx.Err() != nil { // ended before the deadline was armed
			s.release(epoch)
			return wire.Frame{}, s.abandon(ctx, id)
		}
		f, err := s.conn.ReadFrame()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				s.fail(err)
				<-c.ch // closed by finish
				s.stats.Error(stats.KindClosed)
				return wire.Frame{}, c.err
			}
			s.deadlinePassed(false)
			switch {
			case ctx.Err() != nil:
				s.release(epoch)
				return wire.Frame{}, s.abandon(ctx, id)
			case !deadline.IsZero() && !time.Now().Before(deadline):
				s.release(epoch)
				if hasDeadline {
					return wire.Frame{}, s.abandon(ctx, id, context.DeadlineExceeded)
				}
				return wire.Frame{}, s.expire(id, timeout)
			}
			continue // an interruption meant for another caller, or a deadline left over
		}
		s.received(&f)
		if f.ID == id && isAnswer(f.Type) && s.forget(id) {
			s.release(epoch)
			if f.Type == wire.TypeError {
				s.stats.Error(stats.KindRemote)
			}
			return s.answered(c, f, start)
		}
		if isRequest(f.Type) && s.cfg.Handler != nil {
			// Handlers run on readers, never on a caller: hand the
			// token and this frame to one, and wait like any caller.
			s.handOff(epoch, f)
			return s.follow(ctx, c, id, start, hasDeadline, timeout)
		}
		if err := s.dispatch(f); err != nil {
			s.fail(err)
			<-c.ch
			s.stats.Error(stats.KindClosed)
			return wire.Frame{}, c.err
		}
	}
}

// answered finishes a call that got its answer r.
func (s *Session) answered(c *call, r wire.Frame, start time.Time) (wire.Frame, error) {
	s.stats.Latency(time.Since(start))
	// The one answer was taken and the call left the pending map when it
	// was delivered: nothing refers to c any more.
	callPool.Put(c)
	if r.Type == wire.TypeError {
		err := codec.FrameError(r)
		r.Release()
		return wire.Frame{}, err
	}
	return r, nil
}

// expire gives up on request id after the default timeout.
func (s *Session) expire(id uint64, timeout time.Duration) error {
	if s.forget(id) {
		s.sendCancel(id)
	}
	s.stats.Error(stats.KindTimeout)
	return fmt.Errorf("%w: request %d: no answer within %s", spear.ErrTimeout, id, timeout)
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

// OpenStream sends f, which asks for a streamed answer, and returns the
// stream of answering frames.
func (s *Session) OpenStream(ctx context.Context, f *wire.Frame) (*Stream, error) {
	c := &call{ch: make(chan wire.Frame, s.cfg.StreamBuffer), stream: true}
	if _, _, err := s.register(c, true); err != nil {
		return nil, notSent(err)
	}
	f.ID = c.f.ID
	f.Flags |= wire.FlagStream
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
// the context's). The chunk is the caller's to keep.
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

// register gives c a request id and makes it pending. A unary call on a
// connection nobody is reading takes the read token (lead), to read its
// own answer; a stream there gets a reader.
func (s *Session) register(c *call, stream bool) (lead bool, epoch uint64, err error) {
	c.f.ID = s.nextID.Add(2)
	if stream {
		c.f.Flags |= wire.FlagStream
	}
	s.mu.Lock()
	if s.pending == nil {
		err := s.err
		s.mu.Unlock()
		return false, 0, err
	}
	s.pending[c.f.ID] = c
	if s.token.holder != holderNone {
		s.mu.Unlock()
		return false, 0, nil
	}
	if !stream && s.dl != nil {
		epoch = s.takeToken()
		s.mu.Unlock()
		return true, epoch, nil
	}
	s.grantAndUnlock()
	return false, 0, nil
}

// forget removes a pending call and reports whether it was still pending.
func (s *Session) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	return ok
}

// abandon gives up on request id because ctx ended (or, for a caller that
// found its deadline passed while reading, because of cause), and tells
// the peer.
func (s *Session) abandon(ctx context.Context, id uint64, cause ...error) error {
	if s.forget(id) {
		s.sendCancel(id)
	}
	err := ctx.Err()
	if len(cause) > 0 {
		err = cause[0]
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s.stats.Error(stats.KindTimeout)
		return fmt.Errorf("%w: request %d: %w", spear.ErrTimeout, id, err)
	}
	s.stats.Error(stats.KindCanceled)
	return fmt.Errorf("request %d: %w", id, err)
}

func (s *Session) sendCancel(id uint64) {
	_ = s.write(&wire.Frame{Type: wire.TypeCancel, ID: id})
}

// isAnswer reports whether a frame of type t answers a request.
func isAnswer(t wire.Type) bool {
	return t == wire.TypeExecuteResponse || t == wire.TypeStreamData || t == wire.TypeError
}

// isRequest reports whether a frame of type t opens a request.
func isRequest(t wire.Type) bool { return t == wire.TypeExecuteRequest || t == wire.TypeSignal }

// deliver hands an answering frame to its waiting call. It reports whether
// the call it answered has no more answers to wait for.
func (s *Session) deliver(f wire.Frame) {
	terminal := f.Type != wire.TypeStreamData || f.Flags&wire.FlagEnd != 0
	s.mu.Lock()
	c := s.pending[f.ID]
	if c == nil { // a late answer to an abandoned request
		s.mu.Unlock()
		f.Release()
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
		f.Release()
		if !terminal && !s.forget(f.ID) {
			return
		}
		s.stats.Error(stats.KindOverflow)
		c.err = fmt.Errorf("%w: stream %d held %d unread chunks", spear.ErrStreamOverflow, f.ID, cap(c.ch))
		close(c.ch)
		s.sendCancel(f.ID)
	}
}
