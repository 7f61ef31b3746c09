package notify_test

import (
	"context"
	"testing"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/internal/testredis"
)

// BenchmarkPublish measures encoding and publishing one event (one round
// trip), with no subscriber.
func BenchmarkPublish(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	n := notify.New(rdb, nil)
	ch := testredis.Prefix(b) + "orders"
	ctx := context.Background()
	ev := orderEvent{ID: "A-1", Total: 1250}
	for b.Loop() {
		if _, err := n.Publish(ctx, ch, ev); err != nil {
			b.Fatal(err)
		}
	}
}
