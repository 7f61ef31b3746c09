package worker

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// BenchmarkPromote promotes batches of 500 retry envelopes shaped as the
// runtime writes them (a 100-byte payload, attempt and origin ID). Besides
// ns/op it reports redis-µs/entry: the CPU the redis-server spent per
// promoted entry, from INFO cpu around the script calls alone.
func BenchmarkPromote(b *testing.B) {
	c := testredis.Start(b).Client(b)
	ctx := context.Background()
	stream := "s"
	p := newPromoter(c, []string{stream}, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	data := strings.Repeat("x", 100)
	members := make([]redis.Z, p.batch)
	fill := func(round int) {
		for i := range members {
			id := "1700000000000-" + strconv.Itoa(round*len(members)+i)
			members[i] = redis.Z{Score: 1, Member: wire.EncodeEnvelope(id, []string{
				wire.FieldType, "t", wire.FieldData, data, wire.FieldAttempt, "2", wire.FieldOriginID, id,
			})}
		}
		c.ZAdd(ctx, wire.DelayedKey(stream), members...)
	}
	var cpu int64
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		fill(rounds)
		c.Del(ctx, stream)
		cpu -= redisCPU(b, c)
		b.StartTimer()
		if n, dead, _, err := p.promoteBatch(ctx, stream); err != nil || n != len(members) || dead != 0 {
			b.Fatalf("promoted %d (%d dead), %v; want %d", n, dead, err, len(members))
		}
		b.StopTimer()
		cpu += redisCPU(b, c)
		b.StartTimer()
		rounds++
	}
	b.ReportMetric(float64(cpu)/float64(rounds*len(members)), "redis-µs/entry")
}

// redisCPU is the redis-server's user and system CPU so far, in µs.
func redisCPU(b *testing.B, c *redis.Client) int64 {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var us int64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			us += int64(f * 1e6)
		}
	}
	return us
}

// BenchmarkSettle writes batches of 512 retries, as the settle loop does
// when handlers fail (settlebatch.go): each entry pending, each envelope
// shaped as the runtime writes it. Besides ns/op it reports
// redis-µs/entry: the CPU the redis-server spent per settled entry, from
// INFO cpu around the script calls alone.
func BenchmarkSettle(b *testing.B) {
	srv := testredis.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	cfg := config.Default()
	cfg.Streams, cfg.Group, cfg.Consumer = []string{"s"}, "g", "c"
	r := newEngine(cfg, c, NewMux(), slog.New(slog.DiscardHandler), nil)
	stream := cfg.Streams[0]
	data := strings.Repeat("x", 100)
	const n = settleChunk
	batch := make([]settleReq, n)
	fill := func() {
		c.Del(ctx, stream, wire.DelayedKey(stream))
		c.XGroupCreateMkStream(ctx, stream, cfg.Group, "$")
		pipe := c.Pipeline()
		for range n {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t", wire.FieldData, data}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		read, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, ">"}, Count: n}).Result()
		if err != nil {
			b.Fatal(err)
		}
		for i, m := range read[0].Messages {
			batch[i] = settleReq{stream: stream, id: m.ID, due: 1, envelope: wire.EncodeEnvelope(m.ID, []string{
				wire.FieldType, "t", wire.FieldData, data, wire.FieldAttempt, "2", wire.FieldOriginID, m.ID,
			})}
		}
	}
	var cpu int64
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		fill()
		cpu -= redisCPU(b, c)
		b.StartTimer()
		if _, err := r.writeSettles(ctx, batch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += redisCPU(b, c)
		if z := c.ZCard(ctx, wire.DelayedKey(stream)).Val(); z != n {
			b.Fatalf("delayed set holds %d, want %d", z, n)
		}
		b.StartTimer()
		rounds++
	}
	b.ReportMetric(float64(cpu)/float64(rounds*n), "redis-µs/entry")
}
