package producer

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamworker/streamworker/wire"
)

// tracerName names the producer's tracer (instrumentation scope).
const tracerName = "github.com/streamworker/streamworker/producer"

// publishStart are the start options of every publish span, made once.
var publishStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

// startPublish starts the publish span of one call that sends n events to
// stream, following the messaging semantic conventions. Its name and
// attributes are set only on a span that records: a no-op tracer costs one
// Start.
func (p *Producer) startPublish(ctx context.Context, stream string, n int) (context.Context, trace.Span) {
	ctx, span := p.tracer.Start(ctx, "publish", publishStart...)
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetName("publish " + stream)
	span.SetAttributes(
		attribute.String("messaging.system", "redis"),
		attribute.String("messaging.destination.name", stream),
		attribute.String("messaging.operation.name", "publish"),
		attribute.String("messaging.operation.type", "send"),
	)
	if n > 1 {
		span.SetAttributes(attribute.Int("messaging.batch.message_count", n))
	}
	return ctx, span
}

// endPublish records err, when not nil, on span and ends it.
func endPublish(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// traced returns e with the trace context of ctx in its traceparent (and
// tracestate, when not empty) fields, or e as it is when ctx holds no valid
// span. The metadata map is copied, never changed.
func traced(ctx context.Context, e Event) Event {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return e
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	md := make(map[string]string, len(e.Metadata)+len(c))
	maps.Copy(md, e.Metadata)
	delete(md, wire.FieldTraceparent)
	delete(md, "tracestate")
	maps.Copy(md, c)
	e.Metadata = md
	return e
}

// tracedAll returns xs with the trace context of ctx in each one's event (see
// traced), in a new slice; or xs itself when ctx holds no valid span.
func tracedAll[T any](ctx context.Context, xs []T, event func(T) Event, with func(T, Event) T) []T {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return xs
	}
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = with(x, traced(ctx, event(x)))
	}
	return out
}
