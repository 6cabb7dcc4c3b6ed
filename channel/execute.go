package channel

import (
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

// encode builds an EXECUTE_REQUEST into buf, carrying ctx's deadline as
// timeout_ms so the instance can stop when the caller stops waiting.
//
// Without a deadline, fallback (the channel's default request timeout, or 0
// for none) is what the instance is told.
func (inv Invocation) encode(ctx context.Context, buf *[]byte, fallback time.Duration) Message {
	r := codec.ExecuteRequest{Method: inv.Method, Payload: inv.Payload, Metadata: inv.Metadata}
	if d, ok := ctx.Deadline(); ok {
		r.TimeoutMs = uint64(max(time.Until(d).Milliseconds(), 1))
	} else if fallback > 0 {
		r.TimeoutMs = uint64(fallback.Milliseconds())
	}
	*buf = codec.AppendExecuteRequest((*buf)[:0], &r)
	return Message{Type: wire.TypeExecuteRequest, Payload: *buf}
}

// Execute runs the instance's function and returns its result. The
// instance's own failure is a *spear.RemoteError.
func Execute(ctx context.Context, ch *Channel, inv Invocation) ([]byte, error) {
	// The encoding buffer is reused: a transport does not keep a payload
	// once WriteFrame returns, and Request returns after that.
	buf := codec.Buffer()
	r, err := ch.Request(ctx, inv.encode(ctx, buf, ch.cfg.RequestTimeout))
	codec.Release(buf)
	if err != nil {
		return nil, err
	}
	if r.Type != wire.TypeExecuteResponse {
		return nil, spear.InstanceErr(ch.InstanceID(), "execute",
			fmt.Errorf("%w: %s answered an EXECUTE_REQUEST", spear.ErrInvalidMessage, r.Type))
	}
	payload, _, err := codec.DecodeExecuteResponse(r.Payload)
	if err != nil {
		return nil, spear.InstanceErr(ch.InstanceID(), "execute", err)
	}
	return payload, nil
}

// ExecuteStream runs the instance's function with streamed output.
func ExecuteStream(ctx context.Context, ch *Channel, inv Invocation) (*Stream, error) {
	buf := codec.Buffer()
	defer codec.Release(buf)
	return ch.Stream(ctx, inv.encode(ctx, buf, 0)) // streams have no default timeout
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
