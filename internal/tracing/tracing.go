// Package tracing builds the OpenTelemetry tracer provider of a streamworker
// process from the standard OTEL_* variables, and the log handler that puts
// the active span's IDs on log lines. Tracing is off unless an OTLP endpoint
// is set; off, the provider is a no-op and nothing is exported.
package tracing

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator writes and reads the W3C traceparent and tracestate fields of
// a stream entry.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// and the SDK is not disabled (OTEL_SDK_DISABLED=true).
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Provider is a tracer provider and the shutdown that flushes it.
type Provider struct {
	trace.TracerProvider
	// On is false for the no-op provider of an environment without an
	// endpoint: callers skip their tracing work entirely then.
	On  bool
	sdk *sdktrace.TracerProvider
}

// Shutdown exports the spans still buffered and stops the exporter; it is
// a no-op when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing traces: %w", err)
	}
	return nil
}

// New returns the provider the environment asks for: with tracing off (see
// Enabled), a no-op one; on, an SDK provider exporting OTLP over
// HTTP/protobuf in batches. The exporter, the sampler and the resource read
// their OTEL_* variables themselves (OTEL_EXPORTER_OTLP_*,
// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_BSP_*); service is the service name when OTEL_SERVICE_NAME is unset.
func New(ctx context.Context, getenv func(string) string, service string) (*Provider, error) {
	if !Enabled(getenv) {
		return &Provider{TracerProvider: noop.NewTracerProvider()}, nil
	}
	exp, err := exporter(ctx, getenv)
	if err != nil {
		return nil, err
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the default name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME): %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{TracerProvider: sdk, On: true, sdk: sdk}, nil
}

// exporter is the OTLP exporter of the protocol OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
// or OTEL_EXPORTER_OTLP_PROTOCOL names: http/protobuf (the default) or grpc.
// The exporter reads the endpoint, headers, TLS and timeout variables itself.
func exporter(ctx context.Context, getenv func(string) string) (*otlptrace.Exporter, error) {
	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp *otlptrace.Exporter
		err error
	)
	switch strings.TrimSpace(proto) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s=%q is invalid: want http/protobuf or grpc (http/json is not supported)", name, proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}
