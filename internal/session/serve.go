package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Handler serves requests the peer opens (EXECUTE_REQUEST and SIGNAL).
type Handler interface {
	// Serve runs the request req. ctx ends when the peer cancels the
	// request or the session ends; answers go through r. req's payload is
	// valid until Serve returns (the session then releases it to the
	// receive pool), so an answer may alias it but must be sent before
	// Serve returns; anything kept longer must be copied.
	Serve(ctx context.Context, req wire.Frame, r *Responder)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req wire.Frame, r *Responder)

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, req wire.Frame, r *Responder) { f(ctx, req, r) }

// request is one request the peer opened: its context and its responder,
// in one allocation.
type request struct {
	ctx requestContext
	r   Responder
}

// serve runs a handler for a request the peer opened, read by the reader
// holding the token at epoch. It reports whether the reader still holds
// the token afterwards.
func (s *Session) serve(f wire.Frame, epoch uint64) bool {
	if s.cfg.Handler == nil {
		if err := s.dispatch(f); err != nil { // answers NOT_FOUND
			s.fail(err)
			return false
		}
		return true
	}
	req := &request{
		ctx: requestContext{parent: s.ctx},
		r:   Responder{s: s, id: f.ID},
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		f.Release()
		return false
	}
	if _, dup := s.serving[f.ID]; f.ID != 0 && dup {
		s.mu.Unlock()
		f.Release()
		_ = s.write(codec.ErrorFrame(f.ID, spear.CodeInvalidMessage, fmt.Sprintf("request id %d is already in use", f.ID)))
		return true
	}
	if f.ID != 0 {
		s.serving[f.ID] = req
	}
	s.handlers++
	// Run it here when no other handler runs and no further frame is
	// waiting: a burst of requests is better served by several readers,
	// whose answers the transport then writes together.
	inline := s.handlers == 1 && !s.buffered()
	var next uint64
	var start bool
	if inline {
		// No other handler runs: run this one here, and let another
		// reader take over only if it runs past the budget.
		s.token.inline, s.token.inlineAt = true, time.Now()
		if s.takeover == nil {
			s.takeover = time.AfterFunc(inlineBudget, s.takeOver)
		} else {
			s.takeover.Reset(inlineBudget)
		}
	} else {
		// Handlers are running already: requests are arriving faster
		// than one at a time, so another reader reads on while this
		// one serves.
		next, start = s.grantLocked()
	}
	s.mu.Unlock()
	if start {
		s.startReader(next)
	}

	s.cfg.Handler.Serve(&req.ctx, f, &req.r)
	req.ctx.cancel()
	f.Release()

	s.mu.Lock()
	if f.ID != 0 {
		delete(s.serving, f.ID)
	}
	if s.handlers--; s.handlers == 0 {
		s.idle.Broadcast()
	}
	still := inline && s.token.epoch == epoch && !s.ended
	if still {
		s.token.inline = false
		s.takeover.Stop() // it fires only for a handler that runs on
	}
	s.mu.Unlock()
	return still
}

// buffered reports whether the connection holds frames read but not yet
// handled (transport.Buffered); false when it cannot tell.
func (s *Session) buffered() bool {
	b, ok := s.conn.(transport.Buffered)
	return ok && b.Buffered()
}

// takeOver runs on a timer while a reader runs a handler itself: once the
// handler has run for inlineBudget, the token goes to another reader.
func (s *Session) takeOver() {
	s.mu.Lock()
	if !s.token.inline || s.ended {
		s.mu.Unlock() // the handler returned as the timer fired
		return
	}
	if left := inlineBudget - time.Since(s.token.inlineAt); left > 0 {
		s.takeover.Reset(left) // fired late for an earlier handler
		s.mu.Unlock()
		return
	}
	s.token.inline = false
	s.grantAndUnlock()
}

// Responder answers one request the peer opened.
type Responder struct {
	s  *Session
	id uint64

	mu sync.Mutex
	f  wire.Frame // the frame being sent, here so it needs no allocation of its own
}

// ID returns the request id; 0 for a one-way signal, whose answers are
// dropped.
func (r *Responder) ID() uint64 { return r.id }

// Send writes a copy of f, with the request's id, as an answer to the
// request. f is not kept after Send returns.
func (r *Responder) Send(f *wire.Frame) error {
	if r.id == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f = *f
	r.f.ID = r.id
	err := r.s.write(&r.f)
	r.f = wire.Frame{}
	return err
}

// Error answers the request with an ERROR frame.
func (r *Responder) Error(code spear.Code, msg string) error {
	return r.Send(codec.ErrorFrame(0, code, msg))
}

// requestContext is the context of a request the peer opened. It costs
// one allocation with its request and nothing more until a handler waits
// on it (Done) or derives from it: only then is a context.Context of the
// standard kind made under it, with the deadline the request carries.
// Handlers that never look pay for neither that context nor its timer.
type requestContext struct {
	parent   context.Context // the session's
	deadline time.Time

	mu       sync.Mutex
	inner    context.Context // made on first need
	stop     context.CancelFunc
	canceled bool
}

// WithDeadline returns ctx ending at d. For the context a Handler was
// given, that is ctx itself, with no allocation, as long as nothing has
// waited on it yet; otherwise it is context.WithDeadline's, whose cancel
// function ends with the request.
func WithDeadline(ctx context.Context, d time.Time) context.Context {
	if c, ok := ctx.(*requestContext); ok {
		c.mu.Lock()
		if c.inner == nil && c.deadline.IsZero() {
			c.deadline = d
			c.mu.Unlock()
			return c
		}
		c.mu.Unlock()
	}
	dctx, cancel := context.WithDeadline(ctx, d)
	context.AfterFunc(ctx, cancel)
	return dctx
}

// materialize returns the standard context under c, making it on first
// use. c.mu must be held.
func (c *requestContext) materialize() context.Context {
	if c.inner == nil {
		if c.deadline.IsZero() {
			c.inner, c.stop = context.WithCancel(c.parent)
		} else {
			c.inner, c.stop = context.WithDeadline(c.parent, c.deadline)
		}
		if c.canceled {
			c.stop()
		}
	}
	return c.inner
}

// Deadline implements context.Context.
func (c *requestContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, !c.deadline.IsZero()
}

// Done implements context.Context.
func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.materialize().Done()
}

// Err implements context.Context.
func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.inner != nil:
		return c.inner.Err()
	case c.canceled:
		return context.Canceled
	case c.parent.Err() != nil:
		return c.parent.Err()
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. It makes the context under c, so that
// what the context package looks up through Value (the cause, the
// cancellation to attach a child to) is the request's own.
func (c *requestContext) Value(key any) any {
	c.mu.Lock()
	inner := c.materialize()
	c.mu.Unlock()
	return inner.Value(key)
}

// cancel ends the request's context.
func (c *requestContext) cancel() {
	c.mu.Lock()
	c.canceled = true
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}
