package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/sdk"
)

// traceChildEnv, when set, makes the test binary a traced process
// instance (runTraceChild).
const traceChildEnv = "SPEAR_AGENT_TEST_TRACE_CHILD"

// childReport is what the traced instance saw of the trace, in its own
// process: its spear.handler span (opened by the SDK) and a span of the
// function's own started from the handler's context.
type childReport struct {
	TraceID       string `json:"trace_id"`
	HandlerName   string `json:"handler_name"`
	HandlerSpan   string `json:"handler_span"`
	HandlerParent string `json:"handler_parent"`
	WorkSpan      string `json:"work_span"`
	WorkParent    string `json:"work_parent"`
	WorkTraceID   string `json:"work_trace_id"`
	UserMetadata  string `json:"user_metadata"` // the caller's own metadata, beside the trace context
}

// runTraceChild serves, as an SDK instance whose own tracer provider
// keeps spans in memory, a handler that reports the trace it ran in.
func runTraceChild() int {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	in, err := sdk.New(sdk.Options{
		TracerProvider: tp,
		Handler: sdk.HandlerFunc(func(ctx context.Context, req *sdk.Request) ([]byte, error) {
			handler, ok := trace.SpanFromContext(ctx).(sdktrace.ReadOnlySpan)
			if !ok {
				return nil, sdk.Error(500, "the handler's context has no recording span")
			}
			_, work := tp.Tracer("function").Start(ctx, "function work")
			work.End()
			ws := exp.GetSpans()[len(exp.GetSpans())-1]
			return json.Marshal(childReport{
				TraceID:       handler.SpanContext().TraceID().String(),
				HandlerName:   handler.Name(),
				HandlerSpan:   handler.SpanContext().SpanID().String(),
				HandlerParent: handler.Parent().SpanID().String(),
				WorkSpan:      ws.SpanContext.SpanID().String(),
				WorkParent:    ws.Parent.SpanID().String(),
				WorkTraceID:   ws.SpanContext.TraceID().String(),
				UserMetadata:  req.Metadata["user"],
			})
		}),
	})
	if err != nil {
		return 2
	}
	if err := in.Serve(context.Background()); err != nil {
		return 1
	}
	return 0
}

// TestOneTraceAcrossAgentAndChildProcess invokes a function served by a
// real child process through the HTTP API, with a caller's traceparent,
// and checks that the agent's spans and the child's form one trace, each
// the child of the one before: caller -> spear.invoke -> (spear.pool.acquire
// -> spear.instance.start) and spear.channel.execute -> spear.handler (in
// the child) -> the function's own span.
func TestOneTraceAcrossAgentAndChildProcess(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	dir, err := os.MkdirTemp("", "spt") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := channel.NewFactory(channel.Options{SocketDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rt, err := process.New(process.Options{Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Functions: []FunctionConfig{{Name: "traced", Runtime: "process",
		Spec: process.Spec{Command: self, Env: runtime.Env{traceChildEnv: "1"}}}}}
	a, err := New(cfg, Options{Runtimes: []runtime.Runtime{rt}, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(testCtx(t)); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequestWithContext(testCtx(t), "POST", srv.URL+"/v1/functions/traced/invoke", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	req.Header.Set(api.HeaderMetadataPrefix+"user", "kept")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	var child childReport
	if err := json.Unmarshal(body, &child); err != nil {
		t.Fatalf("child's report %q: %v", body, err)
	}

	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
		if got := s.SpanContext.TraceID().String(); got != callerTrace {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, got, callerTrace)
		}
	}
	inv, acq, start, exec := spans["spear.invoke"], spans["spear.pool.acquire"], spans["spear.instance.start"], spans["spear.channel.execute"]
	for _, link := range []struct {
		child  tracetest.SpanStub
		parent string
	}{
		{inv, callerSpan},
		{acq, inv.SpanContext.SpanID().String()},
		{start, acq.SpanContext.SpanID().String()},
		{exec, inv.SpanContext.SpanID().String()},
	} {
		if got := link.child.Parent.SpanID().String(); got != link.parent {
			t.Errorf("span %q has parent %s, want %s", link.child.Name, got, link.parent)
		}
	}
	if len(spans) != 4 || inv.SpanKind != trace.SpanKindServer || exec.SpanKind != trace.SpanKindClient {
		t.Errorf("spans %d, kinds: invoke %v, execute %v; want 4, server and client", len(spans), inv.SpanKind, exec.SpanKind)
	}
	instance := resp.Header.Get(api.HeaderInstance)
	for _, name := range []string{"spear.invoke", "spear.instance.start", "spear.channel.execute"} {
		if !hasAttr(spans[name], "spear.instance", instance) {
			t.Errorf("span %s lacks spear.instance=%s: %v", name, instance, spans[name].Attributes)
		}
	}

	// In the child process: the SDK's handler span is the execute span's
	// child, and the function's own span the handler's.
	execID := exec.SpanContext.SpanID().String()
	if child.TraceID != callerTrace || child.WorkTraceID != callerTrace || child.HandlerName != "spear.handler" ||
		child.HandlerParent != execID || child.WorkParent != child.HandlerSpan || child.UserMetadata != "kept" {
		t.Errorf("child saw %+v; want trace %s, spear.handler under %s, its own span under that", child, callerTrace, execID)
	}
}

func hasAttr(s tracetest.SpanStub, key, value string) bool {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key && kv.Value.AsString() == value {
			return true
		}
	}
	return false
}

// TestTracingOffCostsNothing: with no tracer provider the tracing hooks
// on an invocation's path allocate nothing and leave the metadata alone.
func TestTracingOffCostsNothing(t *testing.T) {
	a := &Agent{met: &metrics{}}
	md := map[string]string{"k": "v"}
	inv := Invocation{Function: "f", Metadata: md}
	carrier := propagation.HeaderCarrier(http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		ctx := a.callerTrace(ctx, carrier)
		ctx, span := a.startInvokeSpan(ctx, &inv, false)
		actx, aspan := a.startAcquireSpan(ctx, inv.Function)
		endSpan(aspan, nil)
		_, xspan, sent := a.startExecuteSpan(actx, nil, inv, 1) // the instance is not looked at when off
		endSpan(xspan, nil)
		setInstance(span, spear.InstanceID{})
		endSpan(span, nil)
		if len(sent) != 1 {
			t.Fatal("metadata changed with tracing off")
		}
	})
	if allocs != 0 {
		t.Fatalf("tracing off: %v allocations per invocation, want 0", allocs)
	}
}
