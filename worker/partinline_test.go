package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// A partition's fetcher runs a backlog's batches of fast handlers itself
// (inline.go), as a stream's does: the first message of each key, and
// after each the next of its key. Every key's messages still run exactly
// once, in order, one at a time.
func TestPartitionBatchesRunOnTheFetcherInKeyOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 4, "c1")
	cfg.Concurrency = 64 // reads bring more than loneMost
	c := srv.Client(t)
	stream := cfg.Streams[0]
	const perKey = 50
	keys := keyNames(40)
	pipe := c.Pipeline()
	for seq := 1; seq <= perKey; seq++ {
		for _, k := range keys {
			publishKeyed(t, pipe, stream, cfg.Partitions, "keyed", k, seq)
		}
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := newKeyLog()
	mux := NewMux()
	mux.HandleFunc("keyed", func(_ context.Context, m *Message) error {
		seq, _ := strconv.Atoi(string(m.Data))
		l.begin(m.Key, seq, m.Attempt, cfg.Consumer)
		defer l.end(m.Key)
		return nil
	})
	fastRan := make(chan bool, 1)
	mux.HandleFunc("fast", func(_ context.Context, m *Message) error {
		fastRan <- m.held != nil
		return nil
	})
	var chained atomic.Int64
	startWorker(t, srv, cfg, mux, withLoneOff(0), withChained(&chained))
	eventually(t, "every message handled", func() bool { return l.total() >= perKey*len(keys) })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
	l.check(t, keys, perKey)

	// A few messages of one key that come together are a read of lone
	// messages: the first runs on the fetcher and the others are chained
	// behind it there, in order. (A backlog's first read is a probe, which
	// chains none, and whether its later reads run on the fetcher depends
	// on the handlers' speed under the race detector.) They are added in
	// one transaction: a blocking read is answered after it, with all four.
	seq := lonePublished(t, c, stream, cfg.Partitions, "b", 1, fastRan)
	before := chained.Load() // the backlog's, as its reads ran
	tx := c.TxPipeline()
	for i := 1; i <= 4; i++ {
		publishKeyed(t, tx, stream, cfg.Partitions, "keyed", "b", seq+i)
	}
	if _, err := tx.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's four handled", func() bool { return l.total() == perKey*len(keys)+4 })
	l.mu.Lock()
	got := slices.Clone(l.seqs["b"])
	l.mu.Unlock()
	if want := []int{seq + 1, seq + 2, seq + 3, seq + 4}; !slices.Equal(got, want) {
		t.Errorf("b ran %v, want %v", got, want)
	}
	if n := chained.Load() - before; n != 3 {
		t.Errorf("%d of b's later three messages were chained on the fetcher behind the one before, want 3", n)
	}
}

// withChained counts the messages chained on a partition's fetcher behind
// the message of their key that ran there (inliner.chain).
func withChained(n *atomic.Int64) Option {
	return func(o *options) { o.tune = append(o.tune, func(r *engine) { r.chained = func() { n.Add(1) } }) }
}

// withHatchAt sets how long a read's lone messages run on the fetcher
// before the hatch hands the rest over (engine.hatchAt): a test that needs
// several to run there in turn is not at the mercy of a stall of inlineFor.
func withHatchAt(d time.Duration) Option {
	return func(o *options) { o.tune = append(o.tune, func(r *engine) { r.hatchAt = d }) }
}

// A keyed message that fails on its partition's fetcher is retried in
// place on a handler goroutine: the fetcher does not wait out its backoff
// but reads and runs the partition's other keys meanwhile, while the
// failed key's later messages wait behind it. At shutdown the waiting key
// is given up: its failed message and the one behind it stay pending.
func TestPartitionFailureOnTheFetcherWaitsOffIt(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.RetryBase, cfg.RetryMax = time.Hour, time.Hour // the retry waits until shutdown
	c := srv.Client(t)
	stream := cfg.Streams[0]
	part := wire.PartitionFor("k", cfg.Partitions)
	other := "" // a key of k's partition
	for i := 0; other == ""; i++ {
		if k := "o" + strconv.Itoa(i); wire.PartitionFor(k, cfg.Partitions) == part {
			other = k
		}
	}
	for seq := 1; seq <= 3; seq++ {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", "k", seq)
	}
	var mu sync.Mutex
	var runs []string // key:seq@attempt, fetcher or pool, in the order they ran
	failed := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("keyed", func(_ context.Context, m *Message) error {
		where := "pool"
		if m.held != nil {
			where = "fetcher"
		}
		mu.Lock()
		runs = append(runs, fmt.Sprintf("%s:%s@%d %s", m.Key, m.Data, m.Attempt, where))
		mu.Unlock()
		if m.Key == "k" && string(m.Data) == "2" {
			close(failed)
			return errors.New("fails; its retry waits an hour")
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux, withLoneOff(0), withHatchAt(time.Minute))
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("k:2 did not run within 10s")
	}
	const others = 5
	for seq := 1; seq <= others; seq++ {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", other, seq)
	}
	eventually(t, "the partition's other key handled while k:2 waits for its retry", func() bool { return outcomeSum(h, "keyed", OutcomeAcked) == 1+others })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"k:1@1 fetcher", "k:2@1 fetcher"}
	if diff := cmp.Diff(want, runs[:min(2, len(runs))]); diff != "" {
		t.Errorf("the first runs (-want +got):\n%s\nall: %v", diff, runs)
	}
	for _, r := range runs[min(2, len(runs)):] {
		if r[0] == 'k' {
			t.Errorf("%s ran while k:2 waited for its retry, want nothing more of k; runs: %v", r, runs)
		}
	}
	if got := outcomeSum(h, "keyed", OutcomeRetried); got != 1 {
		t.Errorf("keyed retried = %d, want 1 (k:2)", got)
	}
	if got := outcomeSum(h, "keyed", OutcomeHandedOver); got != 2 {
		t.Errorf("keyed handed over = %d, want 2 (k:2, given up at shutdown while it waited, and k:3 behind it)", got)
	}
	if got := pendingIn(t, c, stream, cfg.Group, cfg.Partitions); got != 2 {
		t.Errorf("pending after shutdown = %d, want 2 (k:2 and k:3, left for the next owner in order)", got)
	}
}

// A partition given up while a handler the hatch left running on its
// fetcher's worker state still runs, and taken again, gets a new fetch loop
// that runs no message on that worker state until the handler is done: its
// messages go to the handler goroutines meanwhile.
func TestRetakenPartitionWaitsForItsFetchersHandler(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.HandlerTimeout = time.Second // giving the partition up waits a handler timeout and a lease for what runs
	cfg.FetchCount = fewSlots
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	part := wire.PartitionFor("s", cfg.Partitions)
	fast := "" // a key of the slow one's partition
	for i := 0; fast == ""; i++ {
		if k := "f" + strconv.Itoa(i); wire.PartitionFor(k, cfg.Partitions) == part {
			fast = k
		}
	}
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	started, release := make(chan bool, 1), make(chan struct{})
	fastRan := make(chan bool, 1)
	mux := NewMux()
	mux.HandleFunc("slow", func(_ context.Context, m *Message) error {
		started <- m.held != nil
		<-release // past its timeout: a handler that ignores its context
		return nil
	})
	mux.HandleFunc("fast", func(_ context.Context, m *Message) error {
		fastRan <- m.held != nil
		return nil
	})
	h := startWorker(t, srv, cfg, mux, withLoneOff(0), withHatchAt(200*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	eventually(t, "c1 owns both partitions", func() bool { return count(owners(t, c, stream, cfg.Group, 2), "c1") == 2 })
	// The partition's first read asks for one entry, which does not run on
	// the fetcher (publishUntilLone): the slow message comes once one did.
	seq := lonePublished(t, c, stream, cfg.Partitions, fast, 1, fastRan)
	publishKeyed(t, c, stream, cfg.Partitions, "slow", "s", 1)
	startedOnFetcher(t, started, "the slow message")
	owner := wire.PartitionOwnerKey(wire.PartitionStream(stream, part), cfg.Group)
	if err := c.Set(ctx, owner, "thief", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c1 to give the partition up", func() bool { return strings.Contains(logs.String(), "partition given up") })
	if err := c.Del(ctx, owner).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c1 to take the partition back", func() bool { return owners(t, c, stream, cfg.Group, 2)[part] == "c1" })
	// One at a time, as lone messages come (the first read of the new
	// fetch loop asks for one entry: lonePublished).
	for range 3 {
		seq++
		publishKeyed(t, c, stream, cfg.Partitions, "fast", fast, seq)
		select {
		case lone := <-fastRan:
			if lone {
				t.Fatalf("fast message %d, of the partition taken again, ran on its fetcher's worker state while the slow handler still ran there", seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fast message %d did not run within 10s", seq)
		}
	}
	close(release)
	// The take-over ran the slow message again (it was still pending:
	// at-least-once), on a handler goroutine, and it is released too.
	eventually(t, "everything acknowledged", func() bool {
		return outcomeSum(h, "slow", OutcomeAcked) >= 1 && outcomeSum(h, "fast", OutcomeAcked) == seq && pendingIn(t, c, stream, cfg.Group, 2) == 0
	})
	// Once it is done, the fetcher runs its messages again.
	lonePublished(t, c, stream, cfg.Partitions, fast, seq+1, fastRan)
}

// lonePublished publishes messages of type "fast" and key, seq and on, one
// at a time on a partitioned stream, each handler telling ran whether it
// runs on its partition's fetcher, until one does (publishUntilLone), and
// returns the last seq published.
func lonePublished(t *testing.T, c redis.Cmdable, stream string, partitions int, key string, seq int, ran <-chan bool) int {
	t.Helper()
	for last := seq + 4; seq <= last; seq++ {
		publishKeyed(t, c, stream, partitions, "fast", key, seq)
		select {
		case lone := <-ran:
			if lone {
				return seq
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fast message %d did not run within 10s", seq)
		}
	}
	t.Fatalf("none of 5 messages of key %s, published one at a time, ran on their partition's fetcher", key)
	return 0
}

// A shutdown that begins while a handler the hatch left running on a
// partition's fetcher still runs finishes its key: once the handler
// returns, the key's next messages run on the handler goroutines within the
// shutdown timeout, not left pending because the job queue closed first.
func TestShutdownRunsTheKeyOfAHatchedHandler(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.ShutdownTimeout = time.Minute
	cfg.FetchCount = fewSlots
	c := srv.Client(t)
	stream := cfg.Streams[0]
	draining := make(chan struct{})
	started, release := make(chan bool, 1), make(chan struct{})
	var ran atomic.Int64
	mux := NewMux()
	mux.HandleFunc("keyed", func(_ context.Context, m *Message) error {
		if string(m.Data) == "2" {
			started <- m.held != nil
			<-release
		}
		ran.Add(1)
		return nil
	})
	fastRan := make(chan bool, 1)
	mux.HandleFunc("fast", func(_ context.Context, m *Message) error {
		fastRan <- m.held != nil
		return nil
	})
	// The hatch at 200 ms, not 20: under load a fetcher descheduled for
	// 20 ms between starting a lone run and taking its first message
	// would hand k:2 to a handler goroutine before it started.
	h := startWorker(t, srv, cfg, mux, withLoneOff(0), withHatchAt(200*time.Millisecond), func(o *options) {
		o.tune = append(o.tune, func(r *engine) { r.draining = func() { close(draining) } })
	})
	eventually(t, "c1 owns both partitions", func() bool { return count(owners(t, c, stream, cfg.Group, 2), "c1") == 2 })
	// k:1 first, so that the read of k:2 to k:4 runs on the fetcher
	// (lonePublished); k:2 is slow, and the hatch moves the fetch loop on.
	lonePublished(t, c, stream, cfg.Partitions, "k", 1, fastRan)
	pipe := c.Pipeline()
	for seq := 2; seq <= 4; seq++ {
		publishKeyed(t, pipe, stream, cfg.Partitions, "keyed", "k", seq)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	startedOnFetcher(t, started, "k:2")
	// A message without a key in k's partition runs while k:2 does: the
	// hatch has moved the fetch loop on, and k:2's goroutine is no fetcher.
	part := wire.PartitionStream(stream, wire.PartitionFor("k", cfg.Partitions))
	if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: part, Values: []string{wire.FieldType, "fast", wire.FieldData, "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fastRan:
	case <-time.After(10 * time.Second):
		t.Fatal("a message of k's partition did not run within 10s while k:2 ran: the fetch loop did not move on")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	<-draining // the shutdown is under way: nothing is read, and the drain begins
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := ran.Load(); got != 3 {
		t.Errorf("%d of k:2, k:3 and k:4 ran, want all 3: the key's messages behind the hatched handler ran in the drain", got)
	}
	if got := pendingIn(t, c, stream, cfg.Group, cfg.Partitions); got != 0 {
		t.Errorf("pending after shutdown = %d, want 0", got)
	}
}

// fewSlots is the WORKER_FETCH_COUNT of the tests whose next read after a
// lone run must run on the fetcher too. The partitions' fetchers share the
// WORKER_CONCURRENCY (16) slots, and one about to read reserves up to its
// fetch count of them. After a lone run a fetcher's next read is a blocking
// one that asks for as many entries as it reserved slots (readNew). At 16,
// another partition's fetcher sometimes held 15 at the moment this one
// reserved, so its read asked for one entry; a blocking read that brings
// all it asked for is taken for a batch, which never runs on the fetcher
// (takeLone, fastBatch), and the message ran on a handler goroutine (2 of
// 20 runs under -race). At 4, with no handler running, a read here finds at
// least 11 slots free and asks for 4, while the messages the tests expect on
// the fetcher come at most 3 together.
const fewSlots = 4

// startedOnFetcher waits for what's start, told on started (true: on its
// partition's fetcher), and fails t unless it started on the fetcher
// within 10s.
func startedOnFetcher(t *testing.T, started <-chan bool, what string) {
	t.Helper()
	select {
	case lone := <-started:
		if !lone {
			t.Fatalf("%s ran on a handler goroutine, want on its partition's fetcher", what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start within 10s", what)
	}
}
