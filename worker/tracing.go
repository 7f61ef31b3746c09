package worker

import (
	"context"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamworker/streamworker/internal/tracing"
)

// tracerName names the runtime's tracer (instrumentation scope).
const tracerName = "github.com/streamworker/streamworker/worker"

// startProcess starts the process span of m, a child of the trace context
// in its traceparent and tracestate fields (a root span without them), and
// returns ctx with the span, for the handler. Only called with tracing on.
func (r *engine) startProcess(ctx context.Context, m *Message) (context.Context, trace.Span) {
	parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(m.Metadata))
	return r.tracer.Start(parent, "process "+m.Stream,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", m.Stream),
			attribute.String("messaging.consumer.group.name", r.cfg.Group),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.message.id", m.ID),
			attribute.String("messaging.client.id", r.cfg.Consumer),
			attribute.String("streamworker.type", m.Type),
			attribute.Int("streamworker.attempt", m.Attempt),
			attribute.String("streamworker.origin_id", m.OriginID),
		))
}

// endProcess records the handler's error, if any, and what became of the
// message (an Outcome* value) on span, and ends it.
func endProcess(span trace.Span, err error, outcome string) {
	span.SetAttributes(attribute.String("streamworker.outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, firstLine(err.Error()))
	}
	span.End()
}

// startTracing builds the tracer provider the OTEL_* variables ask for (see
// internal/tracing: off unless an OTLP endpoint is set) and, with tracing on,
// wraps logger so that lines logged inside a span carry trace_id and
// span_id. Call stop when the runtime has stopped: it flushes the spans.
func startTracing(ctx context.Context, logger *slog.Logger) (tracer trace.Tracer, _ *slog.Logger, stop func(), err error) {
	tp, err := tracing.New(ctx, os.Getenv, "streamworker")
	if err != nil {
		return nil, nil, nil, err
	}
	if !tp.On {
		return nil, logger, func() {}, nil
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			logger.Warn("could not flush traces", "error", err)
		}
	}
	return tp.Tracer(tracerName), slog.New(tracing.LogHandler(logger.Handler())), stop, nil
}
