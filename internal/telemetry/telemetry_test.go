package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
		err  bool
	}{
		{env: nil, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, want: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: false},
		{env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
	} {
		got, err := Enabled(func(k string) string { return tc.env[k] })
		if got != tc.want || (err != nil) != tc.err || (err != nil && !errors.Is(err, spear.ErrConfig)) {
			t.Errorf("Enabled(%v) = %v, %v; want %v, error %v", tc.env, got, err, tc.want, tc.err)
		}
	}
}

func TestOffByDefault(t *testing.T) {
	tp, err := NewTracerProvider(context.Background(), func(string) string { return "" }, "spearlet", "v0")
	if tp != nil || err != nil {
		t.Fatalf("NewTracerProvider with no OTEL_* variables = %v, %v; want nil, nil", tp, err)
	}
}

// exportOne points the exporter at a collector stand-in, exports one span
// and returns the resource attributes that arrived with it.
func exportOne(t *testing.T) map[string]string {
	t.Helper()
	got := make(chan *collectorpb.ExportTraceServiceRequest, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("collector got %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		req := &collectorpb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			t.Errorf("collector body: %v", err)
		}
		got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	ctx := context.Background()
	tp, err := NewTracerProvider(ctx, os.Getenv, "spearlet", "v1.2.3")
	if err != nil || tp == nil {
		t.Fatalf("NewTracerProvider = %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(ctx, "spear.invoke")
	span.End()
	if err := tp.Shutdown(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	req := <-got
	rs := req.GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || rs[0].GetScopeSpans()[0].GetSpans()[0].GetName() != "spear.invoke" {
		t.Fatalf("exported %v, want the one span", req)
	}
	attrs := map[string]string{}
	for _, kv := range rs[0].GetResource().GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return attrs
}

func TestExportsOverOTLPHTTP(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
	attrs := exportOne(t)
	if attrs["service.name"] != "spearlet" || attrs["service.version"] != "v1.2.3" || attrs["deployment.environment"] != "test" {
		t.Fatalf("resource %v, want service spearlet v1.2.3 and the attribute from OTEL_RESOURCE_ATTRIBUTES", attrs)
	}
}

func TestServiceNameFromEnvWins(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "edge-node-7")
	if attrs := exportOne(t); attrs["service.name"] != "edge-node-7" {
		t.Fatalf("service.name %q, want OTEL_SERVICE_NAME's", attrs["service.name"])
	}
}
