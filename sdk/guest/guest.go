// Package guest is the instance side of Spear for WebAssembly guests: a
// small, synchronous library for WASI preview 1 command modules (Go's
// GOOS=wasip1 GOARCH=wasm), run by runtime/wasm. It imports no network,
// gRPC or reflection-based protobuf code, so modules stay small.
//
// A guest's main is one call:
//
//	func main() {
//		guest.Run(func(ctx context.Context, req *guest.Request) ([]byte, error) {
//			return append([]byte("hello, "), req.Payload...), nil
//		})
//	}
//
// The guest speaks the ordinary protocol (docs/protocol.md) over its
// standard streams: frames from the agent on stdin, frames to the agent on
// stdout; stderr is its log. It authenticates with the SPEAR_INSTANCE_ID and
// SPEAR_SECRET of its WASI environment, then serves one request at a time,
// in order: read a frame, run the handler, write the answer. A guest cannot
// be preempted, so the agent enforces deadlines by killing and replacing
// the module instance; see docs/wasm.md.
//
// The package also runs natively (Serve takes any pair of byte streams),
// which is how its tests run.
package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/wire"
)

// HandlerFunc runs the function for one request. It may write output to
// req first (see Request.Write); its result follows. A returned error
// reaches the caller as a *spear.RemoteError (see Error for choosing its
// code). A panic is not recovered: in a wasm module it ends the module,
// and the agent reports a failed request and starts a fresh module.
type HandlerFunc func(ctx context.Context, req *Request) ([]byte, error)

// Request is one execute request.
type Request struct {
	// Method selects what to run; empty means the default.
	Method string
	// Payload is the caller's input.
	Payload []byte
	// Metadata holds the caller's key-value pairs.
	Metadata map[string]string

	id        uint64
	streaming bool
	c         *conn
	gathered  bytes.Buffer // output written for a unary caller
}

// Streaming reports whether the caller asked for streamed output.
func (r *Request) Streaming() bool { return r.streaming }

// Write sends p as one chunk of output: at once to a streaming caller, or
// gathered ahead of the result for a unary one. It implements io.Writer.
// It is not safe for concurrent use.
func (r *Request) Write(p []byte) (int, error) {
	if !r.streaming {
		return r.gathered.Write(p)
	}
	if err := r.c.WriteFrame(&wire.Frame{Type: wire.TypeStreamData, ID: r.id, Payload: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Error returns an error that reaches the caller with the given wire code,
// for example spear.CodeNotFound for an unknown method.
func Error(code spear.Code, msg string) error { return &spear.RemoteError{Code: code, Message: msg} }

// Config is what Serve needs besides the streams.
type Config struct {
	// ID and Secret identify the instance to the agent.
	ID     spear.InstanceID
	Secret spear.Secret
	// Handler serves execute requests. Required.
	Handler HandlerFunc
}

// ConfigFromEnv returns a Config for h with the instance's id and secret
// from SPEAR_INSTANCE_ID and SPEAR_SECRET (or SPEAR_SECRET_FILE, where the
// module can open the file). Errors match spear.ErrConfig.
func ConfigFromEnv(h HandlerFunc) (Config, error) {
	id, err := spear.ParseInstanceID(os.Getenv(spear.EnvInstanceID))
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %w", spear.ErrConfig, spear.EnvInstanceID, err)
	}
	secret, err := auth.SecretFromEnv()
	if err != nil {
		return Config{}, err
	}
	return Config{ID: id, Secret: secret, Handler: h}, nil
}

// Run is the whole main of a guest: it serves h over stdin and stdout with
// the id and secret from the environment, and exits the process: with
// status 0 when the agent terminates the instance or closes stdin, with
// status 1 on any other error (written to stderr).
func Run(h HandlerFunc) {
	cfg, err := ConfigFromEnv(h)
	if err == nil {
		err = Serve(context.Background(), os.Stdin, os.Stdout, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spear guest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Serve authenticates over in (frames from the agent) and out (frames to
// the agent) and then serves requests one at a time until the agent sends
// a terminate signal or a CLOSE frame, or in ends; in all three cases it
// returns nil. ctx is the parent of every handler's context; it does not
// interrupt a read. A failed handshake returns an error matching
// spear.ErrAuthFailed; malformed input one matching spear.ErrInvalidMessage.
func Serve(ctx context.Context, in io.Reader, out io.Writer, cfg Config) error {
	if cfg.Handler == nil {
		return fmt.Errorf("%w: guest.Config.Handler is required", spear.ErrInvalidConfig)
	}
	c := newConn(in, out)
	// The handshake is internal/auth's, the same as every Go instance's.
	resp, err := auth.Connect(context.Background(), c, cfg.ID, cfg.Secret, wire.FeatureSplit)
	if err != nil {
		return err
	}
	c.peerMax = resp.MaxPayload
	s := &server{c: c, h: cfg.Handler}
	for {
		f, err := c.ReadFrame()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("%w: %w", spear.ErrReceiveFailed, err)
		}
		done, err := s.handle(ctx, f)
		if done || err != nil {
			return err
		}
	}
}

// server is the state of one Serve loop.
type server struct {
	c      *conn
	h      HandlerFunc
	paused bool
}

// handle serves one frame from the agent; done reports that the agent
// ended the conversation.
func (s *server) handle(ctx context.Context, f wire.Frame) (done bool, err error) {
	switch f.Type {
	case wire.TypeExecuteRequest:
		return false, s.execute(ctx, f)
	case wire.TypeSignal:
		return s.signal(f)
	case wire.TypeHeartbeat:
		if f.Flags&wire.FlagAck == 0 {
			return false, s.c.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: f.ID, Payload: f.Payload})
		}
	case wire.TypeClose:
		return true, nil
	case wire.TypeError:
		if f.ID == 0 { // the agent is refusing the connection
			return true, codec.FrameError(f)
		}
	}
	// CANCEL has nothing to cancel in a synchronous guest (the request it
	// names has been answered already); MESSAGE and late answers are
	// dropped.
	return false, nil
}

func (s *server) execute(ctx context.Context, f wire.Frame) error {
	pb, err := codec.ExecuteRequestOf(&f)
	if err != nil {
		return s.fail(f.ID, spear.CodeInvalidMessage, err.Error())
	}
	if s.paused {
		return s.fail(f.ID, spear.CodeUnavailable, "instance is paused")
	}
	if pb.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(pb.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	req := &Request{
		Method:    pb.Method,
		Payload:   pb.Payload,
		Metadata:  pb.Metadata,
		id:        f.ID,
		streaming: f.Flags&wire.FlagStream != 0,
		c:         s.c,
	}
	out, err := s.h(ctx, req)
	if err != nil {
		code, msg := codec.HandlerError(ctx, err)
		return s.fail(f.ID, code, msg)
	}
	var answer *wire.Frame
	if req.streaming {
		answer = &wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagEnd, ID: f.ID, Payload: out}
	} else {
		if req.gathered.Len() > 0 {
			out = append(req.gathered.Bytes(), out...)
		}
		// The answer takes the request's layout.
		answer = &wire.Frame{ID: f.ID}
		codec.PutExecuteResponse(answer, nil, out, nil, f.Flags&wire.FlagSplit != 0)
	}
	err = s.c.WriteFrame(answer)
	var tooLarge *wire.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		// Not sent: the request fails alone, and the connection goes on.
		return s.fail(f.ID, spear.CodeTooLarge, fmt.Sprintf("result of %d bytes is over the agent's limit of %d", len(out), tooLarge.Max))
	}
	return err
}

// signal acknowledges a signal; terminate ends the loop after the ack.
func (s *server) signal(f wire.Frame) (done bool, err error) {
	sig, err := codec.DecodeSignal(f.Payload)
	if err != nil {
		return false, s.fail(f.ID, spear.CodeInvalidMessage, err.Error())
	}
	switch sig.Kind {
	case codec.SignalTerminate:
		return true, s.ack(f.ID)
	case codec.SignalPause, codec.SignalResume:
		s.paused = sig.Kind == codec.SignalPause
		return false, s.ack(f.ID)
	}
	return false, s.fail(f.ID, spear.CodeNotFound, fmt.Sprintf("no handler for signal %d %q", sig.Kind, sig.Name))
}

// ack answers a request with an empty EXECUTE_RESPONSE. A request id of 0
// (a one-way frame) gets no answer.
func (s *server) ack(id uint64) error {
	if id == 0 {
		return nil
	}
	return s.c.WriteFrame(&wire.Frame{Type: wire.TypeExecuteResponse, ID: id})
}

func (s *server) fail(id uint64, code spear.Code, msg string) error {
	if id == 0 {
		return nil
	}
	return s.c.WriteFrame(codec.ErrorFrame(id, code, msg))
}
