package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// TestDeadLettersBounded: a flood of poison messages with WORKER_DLQ_MAXLEN
// set leaves the dead-letter stream at the bound, holding the newest dead
// letters, and the dropped ones are counted.
func TestDeadLettersBounded(t *testing.T) {
	t.Parallel()
	const flood, maxLen = 500, 50
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.DLQMaxLen = maxLen
	mux := NewMux()
	mux.HandleFunc("poison", func(context.Context, *Message) error { return Permanent(errors.New("poison")) })
	h := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	ctx := context.Background()
	pipe := h.client.Pipeline()
	for i := range flood {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: h.stream, Values: []string{wire.FieldType, "poison", wire.FieldData, fmt.Sprint(i)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every poison message dead-lettered", func() bool { return h.outcome("poison", OutcomeDead) == flood })
	if n := h.client.XLen(ctx, wire.DeadLetterKey(h.stream)).Val(); n != maxLen {
		t.Errorf("dead-letter stream holds %d entries, want %d (WORKER_DLQ_MAXLEN)", n, maxLen)
	}
	if got := h.metric("streamworker_dead_letters_dropped_total"); got != flood-maxLen {
		t.Errorf("streamworker_dead_letters_dropped_total = %v, want %d", got, flood-maxLen)
	}
	if h.pending() != 0 {
		t.Errorf("%d entries still pending", h.pending())
	}
}
