package sdk

import (
	"context"
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace context: the agent sends the W3C trace context of its
// spear.channel.execute span in the request's metadata (the keys
// traceparent and tracestate; docs/protocol.md). The SDK puts it into the
// handler's context.Context, so that spans the function starts from that
// context are children of the agent's, in the same trace. With
// Options.TracerProvider set, the SDK also opens a spear.handler span
// around each handler call. The SDK links only OpenTelemetry's trace API;
// a function that exports spans brings its own SDK and exporter.
//
// The traceparent parser is the SDK's own, a few lines that a test checks
// against OpenTelemetry's propagation.TraceContext (FuzzTraceParent):
// importing that package would link net/http and add 1.5 MB to every Go
// function's binary (7.2 MB to 8.9 MB for an echo function).

// tracerName names the SDK's tracer (the instrumentation scope).
const tracerName = "github.com/spear-go/spear/sdk"

// tracedHandler wraps a Handler with the trace context of each request.
type tracedHandler struct {
	h      Handler
	tracer trace.Tracer // nil: propagate only
}

// traced wraps h; tp may be nil.
func traced(h Handler, tp trace.TracerProvider) Handler {
	t := tracedHandler{h: h}
	if tp != nil {
		t.tracer = tp.Tracer(tracerName)
	}
	return t
}

// Execute runs the handler with the request's trace context in ctx, under
// a spear.handler span when a tracer provider was given.
func (t tracedHandler) Execute(ctx context.Context, req *Request) (out []byte, err error) {
	if tp, ok := req.Metadata["traceparent"]; ok {
		if sc := remoteSpanContext(tp, req.Metadata["tracestate"]); sc.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	if t.tracer == nil {
		return t.h.Execute(ctx, req)
	}
	ctx, span := t.tracer.Start(ctx, "spear.handler", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("spear.method", req.Method), attribute.Bool("spear.stream", req.streaming)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	return t.h.Execute(ctx, req)
}

// remoteSpanContext reads W3C trace context: a traceparent value
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>") and its
// tracestate. It returns an invalid SpanContext for a malformed
// traceparent; a malformed tracestate is dropped, as the W3C
// specification asks.
func remoteSpanContext(traceparent, tracestate string) trace.SpanContext {
	var cfg trace.SpanContextConfig
	h := traceparent
	var ver, flags [1]byte
	if !hexPart(ver[:], &h) || ver[0] == 0xff ||
		!hexPart(cfg.TraceID[:], &h) || !hexPart(cfg.SpanID[:], &h) || !hexPart(flags[:], &h) {
		return trace.SpanContext{}
	}
	// Version 00 has nothing after the flags and no reserved flag bits;
	// later versions may add fields.
	if ver[0] == 0 && (h != "" || flags[0] > 3) {
		return trace.SpanContext{}
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	cfg.TraceState, _ = trace.ParseTraceState(tracestate)
	cfg.Remote = true
	if sc := trace.NewSpanContext(cfg); sc.IsValid() { // ids not all zero
		return sc
	}
	return trace.SpanContext{}
}

// hexPart decodes the next '-'-separated field of *h into dst: exactly
// 2*len(dst) lowercase hex digits.
func hexPart(dst []byte, h *string) bool {
	part, rest, _ := strings.Cut(*h, "-")
	*h = rest
	if len(part) != 2*len(dst) || strings.ToLower(part) != part {
		return false
	}
	_, err := hex.Decode(dst, []byte(part))
	return err == nil
}
