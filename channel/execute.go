package channel

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// Invocation is one call of an instance's function.
type Invocation struct {
	Method   string // empty means the default
	Payload  []byte
	Metadata map[string]string
}

// request is inv as an ExecuteRequest, carrying ctx's deadline as
// timeout_ms so the instance can stop when the caller stops waiting.
// Without a deadline, fallback (the channel's default request timeout, or
// 0 for none) is what the instance is told.
func (inv Invocation) request(ctx context.Context, fallback time.Duration) codec.ExecuteRequest {
	r := codec.ExecuteRequest{Method: inv.Method, Payload: inv.Payload, Metadata: inv.Metadata}
	if d, ok := ctx.Deadline(); ok {
		r.TimeoutMs = uint64(max(time.Until(d).Milliseconds(), 1))
	} else if fallback > 0 {
		r.TimeoutMs = uint64(fallback.Milliseconds())
	}
	return r
}

// Result is the answer of Call. Payload aliases a receive buffer the
// result holds from a pool: Release gives it back, and after that neither
// Payload nor anything aliasing it may be used. A result never released
// is collected as garbage like any other value; releasing is what lets
// the next call reuse the buffer instead of allocating (and, for a large
// payload, page-faulting) a new one.
type Result struct {
	// Payload is the function's output.
	Payload []byte
	// Metadata holds the instance's key-value pairs, if it sent any. They
	// are copies, not aliases.
	Metadata map[string]string

	frame wire.Frame
}

// Release gives the result's buffer back to the pool. Calling it again
// does nothing.
func (r *Result) Release() {
	r.frame.Release()
	r.Payload = nil
}

// Call runs the instance's function and returns its result, whose payload
// is read straight into a pooled buffer that the caller gives back with
// Result.Release. The instance's own failure is a *spear.RemoteError.
//
// The invocation's payload travels as its own part of the frame, beside
// the protobuf envelope, without being copied (to instances that announced
// the split layout, which all of this repository's SDKs do); it must not
// change until Call returns.
func Call(ctx context.Context, ch *Channel, inv Invocation) (Result, error) {
	s, i, err := ch.acquire()
	if err != nil {
		return Result{}, err
	}
	// The encoding buffer is reused: a transport does not keep a payload
	// once WriteFrame returns, and Request returns after that.
	buf := codec.Buffer()
	var f wire.Frame
	req := inv.request(ctx, ch.cfg.RequestTimeout)
	*buf = codec.PutExecuteRequest(&f, *buf, &req, s.PeerSplit())
	r, err := ch.request(ctx, s, &f)
	ch.done(i)
	codec.Release(buf)
	if err != nil {
		return Result{}, err
	}
	if r.Type != wire.TypeExecuteResponse {
		r.Release()
		return Result{}, spear.InstanceErr(ch.InstanceID(), "execute",
			fmt.Errorf("%w: %s answered an EXECUTE_REQUEST", spear.ErrInvalidMessage, r.Type))
	}
	payload, md, err := codec.ExecuteResponseOf(&r)
	if err != nil {
		r.Release()
		return Result{}, spear.InstanceErr(ch.InstanceID(), "execute", err)
	}
	return Result{Payload: payload, Metadata: md, frame: r}, nil
}

// Execute runs the instance's function and returns its result, which is
// the caller's to keep (a copy; Call avoids it). The instance's own
// failure is a *spear.RemoteError.
func Execute(ctx context.Context, ch *Channel, inv Invocation) ([]byte, error) {
	res, err := Call(ctx, ch, inv)
	if err != nil {
		return nil, err
	}
	var out []byte
	if len(res.Payload) > 0 {
		out = bytes.Clone(res.Payload)
	}
	res.Release()
	return out, nil
}

// ExecuteStream runs the instance's function with streamed output.
func ExecuteStream(ctx context.Context, ch *Channel, inv Invocation) (*Stream, error) {
	s, i, err := ch.acquire()
	if err != nil {
		return nil, err
	}
	buf := codec.Buffer()
	defer codec.Release(buf)
	var f wire.Frame
	req := inv.request(ctx, 0) // streams have no default timeout
	*buf = codec.PutExecuteRequest(&f, *buf, &req, s.PeerSplit())
	return ch.stream(ctx, s, i, &f)
}

// Signal kinds, re-exported for callers of SendSignal.
const (
	SignalTerminate = spearpb.SignalKind_SIGNAL_KIND_TERMINATE
	SignalPause     = spearpb.SignalKind_SIGNAL_KIND_PAUSE
	SignalResume    = spearpb.SignalKind_SIGNAL_KIND_RESUME
	SignalCustom    = spearpb.SignalKind_SIGNAL_KIND_CUSTOM
)

// SendSignal sends a signal and waits for the instance to acknowledge it.
// name and data are for custom signals.
func SendSignal(ctx context.Context, ch *Channel, kind spearpb.SignalKind, name string, data []byte) error {
	b := codec.AppendSignal(nil, &codec.Signal{Kind: codec.SignalKind(kind), Name: name, Data: data})
	_, err := ch.Request(ctx, Message{Type: wire.TypeSignal, Payload: b})
	return err
}
