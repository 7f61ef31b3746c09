package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/streamworker/streamworker/internal/tracing"
)

// tracerProvider is the provider the OTEL_* variables ask for (a no-op one
// unless an OTLP endpoint is set), and the flush to call once the sends are
// done: each publish call is a span, and each event carries its traceparent.
func (a *app) tracerProvider(ctx context.Context) (trace.TracerProvider, func(), error) {
	tp, err := tracing.New(ctx, a.io.getenv, "streamworker-producer")
	if err != nil {
		return nil, nil, err
	}
	return tp, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			fmt.Fprintln(a.io.err, "producer: warning:", err)
		}
	}, nil
}
