package agent

import (
	"context"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// Spans of an invocation (docs/observability.md):
//
//	spear.invoke            SERVER    the API's call, or Agent.Invoke's caller
//	├─ spear.pool.acquire   INTERNAL  waiting for a free instance
//	│  └─ spear.instance.start        the instance this invocation started (a cold start)
//	└─ spear.channel.execute CLIENT   the request on the instance's channel
//	   └─ spear.handler     SERVER    inside the instance (the SDK), in another process
//
// The execute span's context travels to the instance in the request's
// metadata as W3C trace context (traceparent, tracestate). Every helper
// here does nothing, and allocates nothing, when the tracer is nil:
// tracing is off unless Options.TracerProvider is set.

// Attribute keys of the spans.
const (
	attrFunction  = attribute.Key("spear.function")
	attrMethod    = attribute.Key("spear.method")
	attrStream    = attribute.Key("spear.stream")
	attrInstance  = attribute.Key("spear.instance")
	attrRuntime   = attribute.Key("spear.runtime")
	attrTransport = attribute.Key("spear.transport")
	attrAttempt   = attribute.Key("spear.attempt")
)

// tracerName names the agent's tracer (the instrumentation scope).
const tracerName = "github.com/spear-go/spear/agent"

// traceContext is the W3C trace context propagator: the traceparent and
// tracestate keys, in HTTP headers and in invocation metadata alike.
var traceContext = propagation.TraceContext{}

// callerTrace returns ctx with the caller's span context, when tracing is
// on and carrier (HTTP headers, gRPC metadata) holds W3C trace context, so
// that the invocation's spans join the caller's trace.
func (a *Agent) callerTrace(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if a.met.tracer == nil {
		return ctx
	}
	return traceContext.Extract(ctx, carrier)
}

// grpcCarrier reads trace context from incoming gRPC metadata.
type grpcCarrier metadata.MD

// Get returns the first value of key.
func (c grpcCarrier) Get(key string) string {
	if vs := metadata.MD(c).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Set sets key (not used: the carrier is only read).
func (c grpcCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

// Keys lists the keys.
func (c grpcCarrier) Keys() []string { return slices.Collect(maps.Keys(c)) }

// grpcCallerTrace is callerTrace for a gRPC call's context.
func (a *Agent) grpcCallerTrace(ctx context.Context) context.Context {
	if a.met.tracer == nil {
		return ctx
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return traceContext.Extract(ctx, grpcCarrier(md))
}

// startInvokeSpan opens the span of one invocation.
func (a *Agent) startInvokeSpan(ctx context.Context, inv *Invocation, stream bool) (context.Context, trace.Span) {
	t := a.met.tracer
	if t == nil {
		return ctx, nil
	}
	return t.Start(ctx, "spear.invoke", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attrFunction.String(inv.Function), attrMethod.String(inv.Method), attrStream.Bool(stream)))
}

// startAcquireSpan opens the span of the wait for a free instance.
func (a *Agent) startAcquireSpan(ctx context.Context, function string) (context.Context, trace.Span) {
	t := a.met.tracer
	if t == nil {
		return ctx, nil
	}
	return t.Start(ctx, "spear.pool.acquire", trace.WithAttributes(attrFunction.String(function)))
}

// startExecuteSpan opens the span of the request on an instance's channel
// and returns the invocation to send, whose metadata carries the span's
// context. inv's own metadata map is not modified.
func (a *Agent) startExecuteSpan(ctx context.Context, inst runtime.Instance, inv Invocation, attempt int) (context.Context, trace.Span, map[string]string) {
	t := a.met.tracer
	if t == nil {
		return ctx, nil, inv.Metadata
	}
	ctx, span := t.Start(ctx, "spear.channel.execute", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attrFunction.String(inv.Function), attrMethod.String(inv.Method), attrInstance.String(inst.ID().String()),
		attrTransport.String(string(inst.Channel().Type())), attrAttempt.Int(attempt)))
	md := make(map[string]string, len(inv.Metadata)+2)
	maps.Copy(md, inv.Metadata)
	traceContext.Inject(ctx, propagation.MapCarrier(md))
	return ctx, span, md
}

// startInstanceSpan opens the span of an instance start.
func startInstanceSpan(ctx context.Context, t trace.Tracer, function string, rt spear.RuntimeType) (context.Context, trace.Span) {
	return t.Start(ctx, "spear.instance.start", trace.WithAttributes(attrFunction.String(function), attrRuntime.String(rt.String())))
}

// endInstanceSpan ends an instance start's span with the attempt's
// outcome.
func endInstanceSpan(span trace.Span, a *attempt) {
	switch {
	case a == nil || !closed(a.done):
		span.SetStatus(codes.Unset, "abandoned: the invocation stopped waiting; the start goes on")
	case a.err != nil:
		span.RecordError(a.err)
		span.SetStatus(codes.Error, a.err.Error())
	default:
		span.SetAttributes(attrInstance.String(a.inst.ID().String()))
	}
	span.End()
}

// endSpan ends span (nil when tracing is off), recording err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// setInstance names the instance that served an invocation on its span.
func setInstance(span trace.Span, id spear.InstanceID) {
	if span != nil {
		span.SetAttributes(attrInstance.String(id.String()))
	}
}
