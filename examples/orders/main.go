// Command orders is a worker binary of one's own: its handlers plus the
// runtime, configured from the environment exactly like cmd/worker.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/streamworker/streamworker/worker"
)

type order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func main() {
	mux := worker.NewMux()
	mux.HandleFunc("order.created", func(ctx context.Context, m *worker.Message) error {
		var o order
		if err := json.Unmarshal(m.Data, &o); err != nil {
			return worker.Permanent(fmt.Errorf("decoding order: %w", err)) // retrying cannot fix it
		}
		if o.Total < 0 {
			return worker.Permanent(errors.New("negative total"))
		}
		return nil // acknowledged; any other error is retried with backoff
	})
	// Handlers that need Redis or the logger get them from the runtime.
	setup := worker.WithSetup(func(ctx context.Context, d worker.Deps) error {
		mux.HandleFunc("order.shipped", func(ctx context.Context, m *worker.Message) error {
			return d.Redis.HSet(ctx, "order:"+m.IdempotencyKey, "status", "shipped").Err()
		})
		return nil
	})
	worker.Main(mux, setup) // loads config, connects, runs, exits on SIGTERM/SIGINT
}
