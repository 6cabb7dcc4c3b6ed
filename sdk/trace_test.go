package sdk

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	state  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

// FuzzTraceParent checks the SDK's traceparent reader against
// OpenTelemetry's own propagator: both accept the same inputs and read the
// same span context from them.
func FuzzTraceParent(f *testing.F) {
	for _, tp := range []string{
		parent,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04",
		"", "-", "00--", "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		f.Add(tp, state)
	}
	f.Add(parent, "not a valid=tracestate,,=")
	f.Fuzz(func(t *testing.T, tp, ts string) {
		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
			propagation.MapCarrier{"traceparent": tp, "tracestate": ts}))
		got := remoteSpanContext(tp, ts)
		if !got.Equal(want) || got.IsValid() != want.IsValid() {
			t.Fatalf("traceparent %q tracestate %q: read %v, OpenTelemetry reads %v", tp, ts, got, want)
		}
	})
}

func TestHandlerContextCarriesTheAgentsTrace(t *testing.T) {
	var seen trace.SpanContext
	h := HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		seen = trace.SpanContextFromContext(ctx)
		return nil, nil
	})
	req := &Request{Metadata: map[string]string{"traceparent": parent, "tracestate": state}}
	if _, err := traced(h, nil).Execute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if seen.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || seen.SpanID().String() != "00f067aa0ba902b7" ||
		!seen.IsRemote() || !seen.IsSampled() || seen.TraceState().Get("rojo") != "00f067aa0ba902b7" {
		t.Fatalf("handler saw span context %+v, want the agent's", seen)
	}

	// Without trace context the handler's context has none.
	seen = trace.SpanContext{}
	if _, err := traced(h, nil).Execute(context.Background(), &Request{}); err != nil || seen.IsValid() {
		t.Fatalf("span context %v without traceparent", seen)
	}
}

func TestHandlerSpanWithATracerProvider(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	fail := errors.New("no luck")
	h := HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		_, own := tp.Tracer("fn").Start(ctx, "own work")
		own.End()
		return nil, fail
	})
	req := &Request{Method: "upper", Metadata: map[string]string{"traceparent": parent}}
	if _, err := traced(h, tp).Execute(context.Background(), req); err != fail {
		t.Fatalf("Execute = %v, want the handler's error", err)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].Name != "own work" || spans[1].Name != "spear.handler" {
		t.Fatalf("spans %v, want own work inside spear.handler", spans)
	}
	handler, own := spans[1], spans[0]
	if handler.Parent.SpanID().String() != "00f067aa0ba902b7" || handler.SpanKind != trace.SpanKindServer ||
		own.Parent.SpanID() != handler.SpanContext.SpanID() || own.SpanContext.TraceID() != handler.Parent.TraceID() {
		t.Fatalf("handler span parent %v kind %v, own span parent %v: want agent -> handler -> own work in one trace",
			handler.Parent.SpanID(), handler.SpanKind, own.Parent.SpanID())
	}
	if handler.Status.Description != "no luck" {
		t.Errorf("handler span status %+v, want the error", handler.Status)
	}
}
