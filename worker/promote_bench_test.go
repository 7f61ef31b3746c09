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
	const n = settleChunk
	var cpu int64
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		batch := retries(stream, pendingEntries(b, c, stream, n))
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

// retryRound is how many failures BenchmarkRetryThroughDelayed and
// BenchmarkRetryByReference take through their path at once: about what
// the settle loop gathers in its linger at 1 in 10 failing in the
// failures phase of bench/ (its promotion passes take more, up to 500).
const retryRound = 64

// benchPayload is the data of the entries these benchmarks write.
var benchPayload = strings.Repeat("x", 100)

// pendingEntries empties stream and its delayed set, adds n entries of a
// 100-byte payload and reads them into consumer c of group g, where they
// stay pending.
func pendingEntries(b *testing.B, c *redis.Client, stream string, n int) []redis.XMessage {
	ctx := context.Background()
	if err := c.Del(ctx, stream, wire.DelayedKey(stream)).Err(); err != nil {
		b.Fatal(err)
	}
	if err := c.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		b.Fatal(err)
	}
	pipe := c.Pipeline()
	for range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t", wire.FieldData, benchPayload}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	read, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: int64(n)}).Result()
	if err != nil || len(read) != 1 || len(read[0].Messages) != n {
		b.Fatalf("read %v, %v; want %d entries", read, err, n)
	}
	return read[0].Messages
}

// retries are the settle loop's retries of stream's entries ms, their
// copies shaped as the runtime writes them, due at once.
func retries(stream string, ms []redis.XMessage) []settleReq {
	out := make([]settleReq, len(ms))
	for i, m := range ms {
		out[i] = settleReq{stream: stream, id: m.ID, due: 1, envelope: wire.EncodeEnvelope(m.ID, []string{
			wire.FieldType, "t", wire.FieldData, benchPayload, wire.FieldAttempt, "2", wire.FieldOriginID, m.ID,
		})}
	}
	return out
}

// redisCPUOf is the redis-server's CPU for fn, in µs: INFO cpu around
// it, less what one INFO call took just before.
func redisCPUOf(b *testing.B, c *redis.Client, fn func()) int64 {
	a := redisCPU(b, c)
	start := redisCPU(b, c)
	fn()
	return redisCPU(b, c) - start - (start - a)
}

// retryRounds runs rounds of retryRound failures for b and reports
// redis-µs/failure: the redis-server's CPU for the rounds' work. Each round
// sets up (not timed), then does the work that round returns, timed and
// measured, which ends in the failures' acknowledgement: nothing may be
// left pending after it.
func retryRounds(b *testing.B, c *redis.Client, round func() (work func())) {
	var cpu int64
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		work := round()
		cpu += redisCPUOf(b, c, func() {
			b.StartTimer()
			work()
			b.StopTimer()
		})
		if p, err := c.XPending(context.Background(), "s", "g").Result(); err != nil || p.Count != 0 {
			b.Fatalf("pending after the round: %+v, %v; want none", p, err)
		}
		b.StartTimer()
		rounds++
	}
	b.ReportMetric(float64(cpu)/float64(rounds*retryRound), "redis-µs/failure")
}

// ackAll acknowledges ids of stream s in group g.
func ackAll(b *testing.B, c *redis.Client, ids []string) {
	if err := c.XAck(context.Background(), "s", "g", ids...).Err(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRetryThroughDelayed takes failures through the whole of a retry
// in S:delayed, as the runtime does: the settle script (the copy's ZADD,
// the entry's XACK), the promote script (the copy decoded, its XADD, the
// ZREM), the second read and its XACK. It reports redis-µs/failure: what
// that cost the redis-server, beside BenchmarkRetryByReference.
func BenchmarkRetryThroughDelayed(b *testing.B) {
	c := testredis.Start(b).Client(b)
	ctx := context.Background()
	cfg := config.Default()
	cfg.Streams, cfg.Group, cfg.Consumer = []string{"s"}, "g", "c"
	r := newEngine(cfg, c, NewMux(), slog.New(slog.DiscardHandler), nil)
	p := newPromoter(c, cfg.Streams, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	p.batch = retryRound
	retryRounds(b, c, func() func() {
		batch := retries("s", pendingEntries(b, c, "s", retryRound))
		return func() {
			if _, err := r.writeSettles(ctx, batch); err != nil {
				b.Fatal(err)
			}
			if n, dead, _, err := p.promoteBatch(ctx, "s"); err != nil || n != retryRound || dead != 0 {
				b.Fatalf("promoted %d (%d dead), %v; want %d", n, dead, err, retryRound)
			}
			read, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"s", ">"}, Count: retryRound}).Result()
			if err != nil || len(read) != 1 || len(read[0].Messages) != retryRound {
				b.Fatalf("read %v, %v; want %d retries", read, err, retryRound)
			}
			ids := make([]string, 0, retryRound)
			for _, m := range read[0].Messages {
				ids = append(ids, m.ID)
			}
			ackAll(b, c, ids)
		}
	})
}

// byReferenceTake takes the due members of a delayed set of entry IDs.
var byReferenceTake = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
`)

// BenchmarkRetryByReference measures, for comparison, a retry the runtime
// does not make: the failed entry left pending and its ID put in the
// delayed set (one ZADD for the round), the due IDs taken (a script of
// ZRANGEBYSCORE and ZREM), the entries claimed back (one XCLAIM) and
// acknowledged. No copy is written, decoded or read again. It leaves out
// what such a design would also need (keeping the reclaimer off an entry
// that waits, a trim that spares it): the commands alone, a floor.
func BenchmarkRetryByReference(b *testing.B) {
	c := testredis.Start(b).Client(b)
	ctx := context.Background()
	retryRounds(b, c, func() func() {
		ms := pendingEntries(b, c, "s", retryRound)
		zs := make([]redis.Z, len(ms))
		for i, m := range ms {
			zs[i] = redis.Z{Score: 1, Member: m.ID}
		}
		return func() {
			if err := c.ZAddNX(ctx, wire.DelayedKey("s"), zs...).Err(); err != nil {
				b.Fatal(err)
			}
			ids, err := byReferenceTake.Run(ctx, c, []string{wire.DelayedKey("s")}, 2, retryRound).StringSlice()
			if err != nil || len(ids) != retryRound {
				b.Fatalf("took %d, %v; want %d", len(ids), err, retryRound)
			}
			got, err := c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "c", Messages: ids}).Result()
			if err != nil || len(got) != retryRound {
				b.Fatalf("claimed %d, %v; want %d", len(got), err, retryRound)
			}
			ackAll(b, c, ids)
		}
	})
}
