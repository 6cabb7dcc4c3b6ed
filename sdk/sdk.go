// Package sdk is the instance side of Spear: what a function's process
// links to connect back to the agent, authenticate, and serve requests.
//
// The smallest instance is one line in main:
//
//	func main() {
//		sdk.Run(func(ctx context.Context, req *sdk.Request) ([]byte, error) {
//			return append([]byte("hello, "), req.Payload...), nil
//		})
//	}
//
// Run reads its identity, secret, channel type and address from the
// SPEAR_* environment variables the runtime sets (docs/protocol.md),
// serves requests until the agent sends a terminate signal or the process
// gets SIGTERM, and reconnects with backoff when the agent goes away.
//
// An instance links the unix, tcp and memory transports. The grpc
// transport, which links grpc-go, is there only when the program imports
// it:
//
//	import _ "github.com/spear-go/spear/transport/grpc"
//
// Instances the agent reaches over grpc need it: Kubernetes pods by
// default, and process instances whose function asks for grpc. Without it
// Serve fails at once with an error matching spear.ErrUnsupportedTransport
// that says so.
package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/wire"
)

// Handler runs the function for one request. It may stream output by
// writing to req; its result follows whatever it wrote. A returned error
// reaches the caller as a remote error (see Error for choosing its code).
// ctx ends when the caller gives up, and carries the agent's trace
// context when tracing is on: spans started from it join the agent's
// trace (go.opentelemetry.io/otel/trace.SpanContextFromContext reads it).
type Handler interface {
	Execute(ctx context.Context, req *Request) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) ([]byte, error)

// Execute calls f.
func (f HandlerFunc) Execute(ctx context.Context, req *Request) ([]byte, error) { return f(ctx, req) }

// Request is one execute request.
type Request struct {
	// Method selects what to run; empty means the default.
	Method string
	// Payload is the caller's input.
	Payload []byte
	// Metadata holds the caller's key-value pairs.
	Metadata map[string]string

	streaming bool
	resp      *session.Responder
	mu        sync.Mutex
	gathered  bytes.Buffer // output written for a unary caller
}

// Streaming reports whether the caller asked for streamed output.
func (r *Request) Streaming() bool { return r.streaming }

// Write sends p as one chunk of output: at once to a streaming caller, or
// gathered ahead of the result for a unary one. It implements io.Writer
// and is safe for concurrent use.
func (r *Request) Write(p []byte) (int, error) {
	if !r.streaming {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.gathered.Write(p)
	}
	if err := r.resp.Send(&wire.Frame{Type: wire.TypeStreamData, Payload: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Error returns an error that reaches the caller with the given wire code,
// for example spear.CodeNotFound for an unknown method.
func Error(code spear.Code, msg string) error { return &spear.RemoteError{Code: code, Message: msg} }

// serveExecute runs h for one EXECUTE_REQUEST frame and answers it.
func serveExecute(ctx context.Context, h Handler, f wire.Frame, r *session.Responder) {
	pb, err := codec.DecodeExecuteRequest(f.Payload)
	if err != nil {
		_ = r.Error(spear.CodeInvalidMessage, err.Error())
		return
	}
	if pb.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, msDuration(pb.TimeoutMs))
		defer cancel()
	}
	req := &Request{
		Method:    pb.Method,
		Payload:   pb.Payload,
		Metadata:  pb.Metadata,
		streaming: f.Flags&wire.FlagStream != 0,
		resp:      r,
	}
	out, err := callHandler(ctx, h, req)
	if err != nil {
		_ = r.Error(codec.HandlerError(ctx, err))
		return
	}
	if req.streaming {
		err := r.Send(&wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagEnd, Payload: out})
		var tooLarge *wire.FrameTooLargeError
		if errors.As(err, &tooLarge) {
			_ = r.Error(spear.CodeTooLarge, fmt.Sprintf("last chunk of %d bytes is over the agent's limit of %d", len(out), tooLarge.Max))
		}
		return
	}
	if req.gathered.Len() > 0 {
		out = append(req.gathered.Bytes(), out...)
	}
	// The frame is written before Send returns, so the buffer can go back.
	buf := codec.Buffer()
	*buf = codec.AppendExecuteResponse(*buf, out, nil)
	err = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Payload: *buf})
	codec.Release(buf)
	var tooLarge *wire.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		_ = r.Error(spear.CodeTooLarge, fmt.Sprintf("result of %d bytes is over the agent's limit of %d", len(out), tooLarge.Max))
	}
}

// callHandler runs the handler, turning a panic into an error so that one
// bad request does not take the instance down.
func callHandler(ctx context.Context, h Handler, req *Request) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &spear.RemoteError{Code: spear.CodeInternal, Message: fmt.Sprintf("handler panicked: %v", p)}
		}
	}()
	return h.Execute(ctx, req)
}
