// Package telemetry builds the daemon's OpenTelemetry tracer provider from
// the standard OTEL_* environment variables, with an OTLP exporter. It is
// used by the composition root (cmd/spearlet); the agent only sees the
// trace API, and instances only the propagation API.
//
// Tracing is off unless asked for: OTEL_TRACES_EXPORTER=otlp, or an OTLP
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// without OTEL_TRACES_EXPORTER. OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn it off. OTEL_EXPORTER_OTLP_PROTOCOL (or
// ..._TRACES_PROTOCOL) picks grpc or http/protobuf (the default, as the
// specification says). The exporters read the other OTEL_EXPORTER_OTLP_*
// variables (endpoint, headers, timeout, compression, certificates), the
// SDK reads OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, and OTEL_BSP_* tune the batching.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/spear-go/spear"
)

// Enabled reports whether the environment asks for traces, and how they
// are exported ("otlp" is the only exporter). getenv is os.Getenv in the
// daemon. An OTEL_TRACES_EXPORTER it does not know is an error matching
// spear.ErrConfig.
func Enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	default:
		return false, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: this spearlet exports traces with otlp (or none)", spear.ErrConfig, exp)
	}
}

// NewTracerProvider returns a tracer provider exporting over OTLP in
// batches, or nil when the environment does not ask for traces. The
// resource names the service (OTEL_SERVICE_NAME, else service) and its
// version. The caller must Shutdown the provider, which flushes the spans
// still queued.
func NewTracerProvider(ctx context.Context, getenv func(string) string, service, version string) (*sdktrace.TracerProvider, error) {
	on, err := Enabled(getenv)
	if err != nil || !on {
		return nil, err
	}
	var exp *otlptrace.Exporter
	protocol := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	switch protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q: want grpc or http/protobuf", spear.ErrConfig, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: otlp trace exporter: %w", spear.ErrConfig, err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("%w: trace resource: %w", spear.ErrConfig, err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
