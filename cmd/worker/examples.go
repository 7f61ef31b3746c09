package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/streamworker/streamworker/worker"
)

// registerExamples registers three small handlers that show the outcomes a
// message can have: acknowledged, retried then acknowledged, dead-lettered.
func registerExamples(mux *worker.Mux) {
	// order.created always succeeds.
	mux.HandleFunc("order.created", func(ctx context.Context, m *worker.Message) error {
		return ctx.Err()
	})
	// payment.charge meets a flaky processor: the first two attempts fail,
	// the third succeeds.
	mux.HandleFunc("payment.charge", func(ctx context.Context, m *worker.Message) error {
		if m.Attempt < 3 {
			return fmt.Errorf("payment processor unavailable (attempt %d)", m.Attempt)
		}
		return nil
	})
	// email.send refuses an address without @ for good: retrying cannot fix it.
	mux.HandleFunc("email.send", func(ctx context.Context, m *worker.Message) error {
		if !bytes.Contains(m.Data, []byte("@")) {
			return worker.Permanent(errors.New("invalid email address"))
		}
		return nil
	})
}
