package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/retention"
	"github.com/streamworker/streamworker/wire"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestRetentionKeepsWhatGroupsNeed: with WORKER_RETENTION=0, a sustained
// producer, a fast group (the worker, which trims), a group lagging a fixed
// number of entries behind and a third group whose consumers have all
// stopped with entries pending: the stream is trimmed up to the oldest entry
// the stopped group needs and never past it; once that group is deleted, the
// stream's length stays bounded by the lagging group, batch after batch, and
// the lagging group reads every entry in the end: none it needed was
// trimmed. (Trimming only what no group needs is what keeps the pending
// entries' "deleted while pending" count at 0; test/ checks that count on
// the binaries.)
func TestRetentionKeepsWhatGroupsNeed(t *testing.T) {
	t.Parallel()
	const (
		total = 200_000
		batch = 1000
		lag   = 5000
		node  = 100 // XTRIM MINID ~ removes whole nodes of about this many entries
	)
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	s := testredis.Prefix(t) + "events"
	for _, g := range []string{"fast", "lagging", "stopped"} {
		if err := c.XGroupCreateMkStream(ctx, s, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The trimmer as a worker of the fast group runs it, without the
	// handlers: the groups here are read by the test, at full speed.
	tr := &trimmer{
		client: c, streams: []string{s}, holder: "fast/x",
		retention: retention.Options{Keep: true, LeaseTTL: time.Second},
		trim:      true, every: 10 * time.Millisecond,
		logger: quietLogger(), metrics: newTrimMetrics(prometheus.NewRegistry()),
		held: map[string]bool{}, over: map[string]bool{},
	}
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimDone := make(chan error, 1)
	go func() { trimDone <- tr.Run(trimCtx) }()
	defer func() { stopTrim(); <-trimDone }()
	trimmed := func() float64 { return testutil.ToFloat64(tr.metrics.Trimmed.WithLabelValues(s)) }

	produced := 0
	produce := func() {
		t.Helper()
		pipe := c.Pipeline()
		for range batch {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{wire.FieldType, "e"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		produced += batch
	}
	// readGroup delivers up to n entries to group and acknowledges them.
	readGroup := func(group string, n int) []string {
		t.Helper()
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "x", Streams: []string{s, ">"}, Count: int64(n), Block: -1}).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		var ids []string
		for _, st := range res {
			for _, m := range st.Messages {
				ids = append(ids, m.ID)
			}
		}
		return ids
	}
	// The fast group reads and acknowledges everything, a batch at a time.
	fast := func() {
		t.Helper()
		for {
			ids := readGroup("fast", batch)
			if len(ids) == 0 {
				return
			}
			if err := c.XAck(ctx, s, "fast", ids...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	lagged := 0
	keepLag := func() {
		t.Helper()
		if n := produced - lag - lagged; n > 0 {
			ids := readGroup("lagging", n)
			if len(ids) > 0 {
				if err := c.XAck(ctx, s, "lagging", ids...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			lagged += len(ids)
		}
	}
	first := func() string {
		es, err := c.XRangeN(ctx, s, "-", "+", 1).Result()
		if err != nil || len(es) == 0 {
			return ""
		}
		return es[0].ID
	}

	// 1. The stopped group read 300 entries and acknowledged the first 100;
	// its consumer then stopped for good.
	produce()
	stoppedIDs := readGroup("stopped", 300)
	if err := c.XAck(ctx, s, "stopped", stoppedIDs[:100]...).Err(); err != nil {
		t.Fatal(err)
	}
	needed := stoppedIDs[100]
	for range 9 {
		produce()
		fast()
		keepLag()
	}
	eventually(t, "the stream trimmed up to the stopped group's oldest pending entry", func() bool {
		n, _ := c.XRangeN(ctx, s, "-", "("+needed, node+1).Result()
		return len(n) < node && trimmed() > 0
	})
	if f := first(); f > needed && len(f) == len(needed) || !idLE(f, needed) {
		t.Fatalf("first entry %s: the stopped group's pending entry %s was trimmed", f, needed)
	}
	if p, _ := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: "stopped", Start: needed, End: needed, Count: 1}).Result(); len(p) != 1 {
		t.Fatal("the stopped group's oldest pending entry left its pending list")
	}
	if es, _ := c.XRangeN(ctx, s, needed, needed, 1).Result(); len(es) != 1 {
		t.Fatalf("entry %s, pending in the stopped group, is gone from the stream", needed)
	}

	// 2. The stopped group is deleted; the lagging group now bounds the
	// stream, whose length stays within the lag, a batch and a node,
	// batch after batch, up to the total.
	if err := c.XGroupDestroy(ctx, s, "stopped").Err(); err != nil {
		t.Fatal(err)
	}
	bound := int64(lag + 2*batch + node)
	for produced < total {
		produce()
		fast()
		keepLag()
		eventually(t, fmt.Sprintf("the stream within %d entries after %d produced", bound, produced), func() bool {
			return c.XLen(ctx, s).Val() <= bound
		})
	}
	if got := trimmed(); got < float64(total-bound) {
		t.Errorf("streamworker_trimmed_total = %v, want at least %d", got, total-bound)
	}
	// The lagging group reads every entry it has not read: none was trimmed.
	rest := 0
	for {
		ids := readGroup("lagging", 10000)
		if len(ids) == 0 {
			break
		}
		rest += len(ids)
	}
	if lagged+rest != total {
		t.Errorf("the lagging group read %d entries, want %d: entries it needed were trimmed", lagged+rest, total)
	}
}

// idLE reports whether stream ID a is at most b.
func idLE(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	num := func(x, y string) int {
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	}
	if c := num(am, bm); c != 0 {
		return c < 0
	}
	return num(as, bs) <= 0
}

func groupLag(t *testing.T, c *redis.Client, s, group string) int64 {
	t.Helper()
	gs, err := c.XInfoGroups(context.Background(), s).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == group {
			return g.Lag
		}
	}
	t.Fatalf("no group %s", group)
	return 0
}

// TestTrimmersNeverTrimAtOnce: two workers both eligible to trim a stream;
// what Redis executed (MONITOR) shows every XTRIM run by the trim script of
// the worker holding the trim lease, the holder changing only after it
// stopped, never two holders interleaved.
func TestTrimmersNeverTrimAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testredis.Start(t)
	cfg := testConfig(t, srv)
	cfg.Retention.On = true
	cfg.TrimInterval = 10 * time.Millisecond
	s := cfg.Streams[0]
	c := srv.Client(t)

	mon := startMonitor(t, srv.Addr)
	mux := NewMux()
	mux.HandleFunc("e", func(context.Context, *Message) error { return nil })
	cfg.Consumer = "a"
	a := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	cfgB := cfg
	cfgB.Consumer = "b"
	b := startWorker(t, srv, cfgB, NewMux(), WithLogger(quietLogger()))
	_ = b
	publish := func(n int) {
		pipe := c.Pipeline()
		for range n {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{wire.FieldType, "e"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lease := wire.TrimLeaseKey(s)
	eventually(t, "a trim lease holder", func() bool { return c.Get(ctx, lease).Val() != "" })
	first := c.Get(ctx, lease).Val()
	for range 20 {
		publish(200)
		eventually(t, "the stream trimmed", func() bool { return c.XLen(ctx, s).Val() < 200 })
	}
	// The first holder stops; the other takes over once the lease is
	// released.
	var second string
	if first == "g/a" {
		if err := a.stop(); err != nil {
			t.Fatal(err)
		}
		second = "g/b"
	} else {
		if err := b.stop(); err != nil {
			t.Fatal(err)
		}
		second = "g/a"
	}
	eventually(t, "the other worker to take the lease", func() bool { return c.Get(ctx, lease).Val() == second })
	for range 20 {
		publish(200)
		eventually(t, "the stream trimmed by the second holder", func() bool { return c.XLen(ctx, s).Val() < 200 })
	}
	lines := mon.stop()

	// Each trim script call is logged with its arguments (the holder is the
	// one after the two keys), then the commands it ran, each "lua": the
	// SET that takes the lease, the XTRIM. Every XTRIM must come from the
	// script of the worker that last took the lease, and the second holder
	// trims only after it has taken the lease.
	var holders []string
	caller, holder := "", ""
	for _, l := range lines {
		args := quoted(l)
		switch {
		case len(args) > 0 && (strings.EqualFold(args[0], "evalsha") || strings.EqualFold(args[0], "eval")):
			caller = ""
			if len(args) > 5 && args[3] == s && args[4] == lease {
				caller = args[5]
			}
		case !strings.Contains(l, " lua]"):
		case len(args) > 2 && strings.EqualFold(args[0], "SET") && args[1] == lease:
			holder = args[2]
		case len(args) > 0 && strings.EqualFold(args[0], "XTRIM") && args[1] == s:
			if caller == "" || caller != holder {
				t.Fatalf("an XTRIM by %q while %q held the trim lease: %s", caller, holder, l)
			}
			if len(holders) == 0 || holders[len(holders)-1] != caller {
				holders = append(holders, caller)
			}
		}
	}
	if len(holders) < 2 || holders[len(holders)-1] != second {
		t.Fatalf("trims by %v in turn, want the last by %s, which took the lease when %s stopped", holders, second, first)
	}
	if len(holders) > 2 {
		t.Logf("the lease changed hands %d times (a holder slower than the lease TTL loses it)", len(holders)-1)
	}
}

// quoted returns the quoted arguments of a MONITOR line.
func quoted(line string) []string {
	var out []string
	for {
		i := strings.IndexByte(line, '"')
		if i < 0 {
			return out
		}
		line = line[i+1:]
		j := 0
		for j < len(line) && line[j] != '"' {
			if line[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(line) {
			return out
		}
		out = append(out, line[:j])
		line = line[j+1:]
	}
}

type monitor struct {
	conn  net.Conn
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// startMonitor records every command srv executes (MONITOR) until stop.
func startMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
		t.Fatalf("MONITOR: %q, %v", l, err)
	}
	m := &monitor{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			m.mu.Lock()
			m.lines = append(m.lines, l)
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { m.stop() })
	return m
}

func (m *monitor) stop() []string {
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lines
}
