package handlertest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// A message is matched to a dead letter by the dead letter's origin_id only:
// a message whose stream ID happens to equal a dead letter's own ID (the
// two streams number their entries independently, often in the same
// millisecond) is not taken for dead-lettered.
func TestWaitMatchesDeadLettersByOrigin(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	mux := worker.NewMux()
	mux.HandleFunc("bad", func(context.Context, *worker.Message) error { return worker.Permanent(errors.New("no")) })
	mux.HandleFunc("ok", func(context.Context, *worker.Message) error { return nil })
	h.Start(mux)

	h.DeadLettered(h.Send("bad", "x"))
	ctx := context.Background()
	dl, err := h.Redis.XRange(ctx, wire.DeadLetterKey(h.Stream), "-", "+").Result()
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead-letter stream = %v, %v; want one entry", dl, err)
	}
	// The next message gets the dead letter's own ID.
	id, err := h.Redis.XAdd(ctx, &redis.XAddArgs{Stream: h.Stream, ID: dl[0].ID, Values: []string{wire.FieldType, "ok", wire.FieldData, "y"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	h.Acked(id)
}
