package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/streamworker/streamworker/bench/internal/usage"
	"github.com/streamworker/streamworker/producer"
)

// benchProduce times publish sending n events in total to a fresh stream,
// per operation.
func benchProduce(b *testing.B, n int, publish func(ctx context.Context, p *producer.Producer, stream string, n int) error) {
	b.Helper()
	s := sharedServer(b)
	admin := newClient(b, s)
	client, err := producer.NewClient(clientURL(s))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	p := producer.New(client, producer.Options{})
	var total usage.Cost
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		stream := streamName()
		start := usage.Measure(s.Pid())
		b.StartTimer()
		err := publish(ctx, p, stream, n)
		b.StopTimer()
		total = total.Add(usage.Measure(s.Pid()).Sub(start))
		if err != nil {
			b.Fatal(err)
		}
		if got, err := admin.XLen(ctx, stream).Result(); err != nil || got != int64(n) {
			b.Fatalf("stream has %d entries (%v), want %d", got, err, n)
		}
		cleanupKeys(ctx, admin, stream)
		cancel()
	}
	report(b, n*b.N, total)
}

// BenchmarkProduceBatch publishes with PublishBatch, one pipelined round trip
// per batch.
func BenchmarkProduceBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			events := make([]producer.Event, size)
			for i := range events {
				events[i] = producer.Event{Type: msgType, Data: payload}
			}
			benchProduce(b, *msgsFlag, func(ctx context.Context, p *producer.Producer, stream string, n int) error {
				for sent := 0; sent < n; sent += size {
					batch := events[:min(size, n-sent)]
					if _, err := p.PublishBatch(ctx, stream, batch); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// BenchmarkProduceSingle publishes with Publish, one XADD per round trip.
// It sends a quarter of -msgs, as it is the slowest.
func BenchmarkProduceSingle(b *testing.B) {
	e := producer.Event{Type: msgType, Data: payload}
	benchProduce(b, *msgsFlag/4, func(ctx context.Context, p *producer.Producer, stream string, n int) error {
		for range n {
			if _, err := p.Publish(ctx, stream, e); err != nil {
				return err
			}
		}
		return nil
	})
}
