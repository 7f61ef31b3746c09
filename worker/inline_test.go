package worker

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// onFetcher reports whether the calling handler runs on its stream's
// fetcher, as a lone message (inline.go), rather than on a handler
// goroutine.
func onFetcher() bool {
	buf := make([]byte, 64<<10)
	return bytes.Contains(buf[:runtime.Stack(buf, false)], []byte("(*fetcher).runLone"))
}

// pipelineLog is a client hook that records the commands of each pipeline
// the worker sends, by name, an XREADGROUP without BLOCK as
// "xreadgroup-now".
type pipelineLog struct {
	mu    sync.Mutex
	sends [][]string
}

func (l *pipelineLog) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (l *pipelineLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (l *pipelineLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
			if names[i] == "xreadgroup" && !slices.ContainsFunc(c.Args(), func(a any) bool { s, ok := a.(string); return ok && strings.EqualFold(s, "block") }) {
				names[i] = "xreadgroup-now"
			}
		}
		l.mu.Lock()
		l.sends = append(l.sends, names)
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (l *pipelineLog) snapshot() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sends)
}

func (l *pipelineLog) sent(names ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.sends, func(s []string) bool { return slices.Equal(s, names) })
}

// withLoneOff sets how long a fetcher runs no lone message after one
// turned out slow (engine.loneOff). Under the race detector on a busy
// machine a fast handler can take longer than inlineFor; tests that need
// lone messages after many have run set it to 0.
func withLoneOff(d time.Duration) Option {
	return func(o *options) { o.tune = append(o.tune, func(r *engine) { r.loneOff = d }) }
}

// publishUntilLone publishes messages of type typ one at a time, each
// handler telling ran whether it runs on the fetcher, until one does, and
// returns how many it published. Not every one does: the first read after
// start asks for one entry (only a read that asked for more and got one
// leaves a lone message), and while the last lone message's handler still
// ends on its goroutine the next goes to a handler goroutine.
func publishUntilLone(t *testing.T, h *harness, ran <-chan bool, typ string) int {
	t.Helper()
	for n := 1; n <= 5; n++ {
		h.publish("type", typ)
		select {
		case lone := <-ran:
			if lone {
				return n
			}
		case <-time.After(10 * time.Second):
			// The handlers of those before it hold every slot.
			t.Fatalf("the %d %q messages published so far ran on handler goroutines, and the last did not start within 10s", n, typ)
		}
	}
	t.Fatalf("none of 5 %q messages on a quiet stream ran on its fetcher", typ)
	return 0
}

// On a quiet stream a message that comes alone runs on the fetcher, and its
// acknowledgement goes with the next read, in one pipeline.
func TestLoneMessageRunsOnFetcherAndIsAckedWithTheNextRead(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	log := &pipelineLog{}
	client := srv.Client(t)
	client.AddHook(log)
	ran := make(chan bool, 1)
	var handled atomic.Int64
	mux := NewMux()
	mux.HandleFunc("fast", func(context.Context, *Message) error { handled.Add(1); ran <- onFetcher(); return nil })
	h := startWorker(t, srv, cfg, mux, WithRedis(client), withLoneOff(0))
	// A lone message whose handler took more than inlineFor (the race
	// detector on a busy machine) leaves its acknowledgement to the ack
	// loop: so a few more, one at a time.
	published := 0
	for published < 20 && !log.sent("xack", "xreadgroup") {
		published += publishUntilLone(t, h, ran, "fast")
		eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	}
	if !log.sent("xack", "xreadgroup") {
		t.Fatalf("no pipeline of an XACK and the next XREADGROUP after %d lone messages; pipelines sent: %v", published, log.snapshot())
	}
	// Counted once the read it went with answers.
	eventually(t, "every message counted as acked", func() bool { return int64(h.outcome("fast", OutcomeAcked)) == handled.Load() })
}

// A lone message whose handler is slow does not hold the stream up: the
// fetch loop moves on without it, and the next message runs meanwhile.
// For loneOff after, the stream's messages run on the handler goroutines.
func TestSlowLoneMessageDoesNotHoldTheStreamUp(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	ran := make(chan bool, 1)
	fast := make(chan bool, 1)
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("fast", func(context.Context, *Message) error { fast <- onFetcher(); return nil })
	mux.HandleFunc("slow", func(context.Context, *Message) error { ran <- onFetcher(); <-release; return nil })
	h := startWorker(t, srv, cfg, mux, withLoneOff(time.Hour))
	publishUntilLone(t, h, ran, "slow")
	h.publish("type", "fast")
	select {
	case <-fast:
	case <-time.After(10 * time.Second):
		t.Fatal("a message published while a lone one ran was not handled within 10s: the slow handler held the stream's reads up")
	}
	close(release)
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	// Alone on a quiet stream, each would run on the fetcher (see
	// publishUntilLone) but for the slow one.
	for i := range 5 {
		h.publish("type", "fast")
		select {
		case lone := <-fast:
			if lone {
				t.Fatalf("fast message %d after a slow lone one ran on the fetcher, want on a handler goroutine for loneOff", i+1)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fast message %d after a slow lone one was not handled within 10s", i+1)
		}
		eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	}
}

// Shutdown waits for a lone message's handler, and writes its
// acknowledgement, before Run returns.
func TestShutdownWaitsForLoneMessage(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	ran := make(chan bool, 1)
	release := make(chan struct{})
	var finished, cancelled atomic.Int32
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, _ *Message) error {
		ran <- onFetcher()
		<-release
		if ctx.Err() != nil {
			cancelled.Add(1)
		}
		finished.Add(1)
		return nil
	})
	l := listenHTTP(t)
	h := startWorker(t, srv, cfg, mux, WithListener(l))
	n := publishUntilLone(t, h, ran, "slow")
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	eventually(t, "not ready", func() bool { return get("http://"+l.Addr().String()+"/readyz") != 200 })
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a lone message's handler still ran", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil after a clean shutdown", err)
	}
	if got := finished.Load(); got != int32(n) {
		t.Errorf("%d handlers finished, want the %d running", got, n)
	}
	if got := cancelled.Load(); got != 0 {
		t.Errorf("%d handlers' contexts ended during a graceful drain, want 0", got)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending after the drain = %d, want 0: the lone message's acknowledgement written", p)
	}
}

// At the shutdown deadline a lone message still running is handed over
// and its handler cancelled, as one on a handler goroutine is.
func TestShutdownDeadlineHandsOverLoneMessage(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	cfg.ReclaimMinIdle = time.Minute
	ran := make(chan bool, 1)
	mux := NewMux()
	mux.HandleFunc("stuck", func(ctx context.Context, _ *Message) error {
		ran <- onFetcher()
		<-ctx.Done() // only the shutdown deadline ends it
		return ctx.Err()
	})
	h := startWorker(t, srv, cfg, mux)
	n := publishUntilLone(t, h, ran, "stuck")
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	h.requireHandedOver("stuck", n)
}

// A lone message that runs longer than the min-idle keeps its lease:
// another consumer's reclaimer does not take it over.
func TestSlowLoneMessageKeepsItsLease(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	ran := make(chan bool, 1)
	var mu sync.Mutex
	var runs []string // the consumer of each run
	mux := func(consumer string) *Mux {
		m := NewMux()
		m.HandleFunc("slow", func(ctx context.Context, _ *Message) error {
			mu.Lock()
			runs = append(runs, consumer)
			mu.Unlock()
			if consumer == "c1" {
				ran <- onFetcher()
			}
			select { // the work: much longer than the min-idle
			case <-time.After(2500 * time.Millisecond):
			case <-ctx.Done():
			}
			return ctx.Err()
		})
		return m
	}
	h := startWorker(t, srv, cfg, mux("c1"))
	n := publishUntilLone(t, h, ran, "slow")
	// A second consumer of the stream starts now: its reclaimer looks
	// every 50ms for entries idle a second.
	cfgB := cfg
	cfgB.Consumer = "c2"
	startWorker(t, srv, cfgB, mux("c2"))
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != n || slices.Contains(runs, "c2") {
		t.Errorf("%d slow messages ran on %s, want each once, on c1 (their leases kept)", n, strings.Join(runs, ", "))
	}
}

// The acknowledgements of lone messages that succeeded on the fetcher do
// not wait behind a slow one that came in the same read: when the hatch
// hands the stream over, they go to the ack loop, and Redis has them while
// the slow handler still runs. Held back, their entries would stay pending
// and unleased, for any reclaimer to run again once idle past the min-idle.
func TestHatchSendsTheAcknowledgementsHeld(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	const fast = 4
	ran := make(chan bool, 1)
	release := make(chan struct{})
	mux := NewMux()
	var fastLone atomic.Int64 // fast messages run on the fetcher
	mux.HandleFunc("fast", func(context.Context, *Message) error {
		if onFetcher() {
			fastLone.Add(1)
		}
		return nil
	})
	mux.HandleFunc("slow", func(context.Context, *Message) error { ran <- onFetcher(); <-release; return nil })
	h := startWorker(t, srv, cfg, mux, withLoneOff(0))
	t.Cleanup(func() { close(release) }) // before the worker's shutdown, should the test fail with one waiting
	client := srv.Client(t)
	for try := 1; ; try++ {
		fastLone.Store(0)
		// In one transaction, so that one read brings them all.
		pipe := client.TxPipeline()
		for range fast {
			pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: cfg.Streams[0], Values: []any{"type", "fast"}})
		}
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: cfg.Streams[0], Values: []any{"type", "slow"}})
		if _, err := pipe.Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		var lone bool
		select {
		case lone = <-ran:
		case <-time.After(10 * time.Second):
			t.Fatal("a slow message did not start within 10s")
		}
		if lone && fastLone.Load() == fast {
			break // all five on the fetcher, in that order: the fast ones' acknowledgements held
		}
		// The read ran on the handler goroutines (see publishUntilLone),
		// or the messages came in more than one read.
		release <- struct{}{}
		eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
		if try == 5 {
			t.Fatal("none of 5 sets of a few messages on a quiet stream ran on its fetcher in one run")
		}
	}
	eventually(t, "the fast messages acknowledged while the slow one runs", func() bool { return h.pending() == 1 })
	release <- struct{}{}
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
}

// A read sent in a pipeline with acknowledgements blocks for no longer
// than the client's read timeout allows, less a second: go-redis gives a
// pipeline the read timeout alone, without the BLOCK added.
func TestPipelineBlock(t *testing.T) {
	t.Parallel()
	block := 2 * time.Second
	for _, tc := range []struct {
		readTimeout time.Duration // as given to redis.Options
		want        time.Duration
	}{
		{0, block},                // go-redis's default, 3s
		{10 * time.Second, block}, // room for the whole BLOCK
		{2500 * time.Millisecond, 1500 * time.Millisecond},
		{time.Second, 0}, // no room: such reads go alone
		{-1, block},      // no deadline
	} {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: tc.readTimeout})
		if got := pipelineBlock(c, block); got != tc.want {
			t.Errorf("read timeout %s: pipelineBlock = %s, want %s", tc.readTimeout, got, tc.want)
		}
		_ = c.Close()
	}
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	if got := pipelineBlock(cluster, block); got != 0 {
		t.Errorf("cluster client: pipelineBlock = %s, want 0", got)
	}
}

// A lone message counts against WORKER_CONCURRENCY: with read-ahead slots
// granted (the semaphore has more slots than handlers), a message run on
// the fetcher still leaves no more than WORKER_CONCURRENCY handlers
// running at once.
func TestLoneMessagesKeepToConcurrency(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 2
	cfg.ReadAhead = 8
	off := withLoneOff(0) // the fast ones may have run slow
	ran := make(chan bool, 16)
	release := make(chan struct{})
	var mu sync.Mutex
	running, most := 0, 0
	mux := NewMux()
	mux.HandleFunc("fast", func(context.Context, *Message) error { return nil })
	mux.HandleFunc("hold", func(context.Context, *Message) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		ran <- onFetcher()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	h := startWorker(t, srv, cfg, mux, off)
	// A fast pace first, so that the read-ahead grants slots.
	for range 2000 {
		h.publish("type", "fast")
	}
	eventually(t, "the fast messages acknowledged", func() bool { return h.pending() == 0 })
	n := publishUntilLone(t, h, ran, "hold")
	for range 4 {
		h.publish("type", "hold")
	}
	// Read, they wait for a handler goroutine (in read-ahead slots) or run.
	eventually(t, "the others read", func() bool { return h.pending() == int64(n+4) })
	close(release)
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if most > cfg.Concurrency {
		t.Errorf("%d handlers ran at once, want at most WORKER_CONCURRENCY=%d", most, cfg.Concurrency)
	}
}

// The hatch's timer, driven by hand: it stays set while lone messages come,
// rests after idleChecks firings that found none, and a lone message that
// has run for inlineFor is handed over and turns lone messages off for
// loneOff.
func TestHatchTimer(t *testing.T) {
	t.Parallel()
	r := &engine{jobs: newJobQueue(4), loneOff: time.Hour}
	resumed := make(chan struct{}, 1) // the fetch loop's new goroutine
	in := &inliner{r: r, base: time.Now().Add(-time.Second), resume: func() { resumed <- struct{}{} }}
	in.hatch = time.AfterFunc(time.Hour, func() {}) // fired by hand below
	t.Cleanup(func() { in.hatch.Stop() })
	in.armed.Store(true)

	// Lone messages keep coming: it stays set.
	for i := range 3 * idleChecks {
		in.runs.Add(1)
		in.check()
		if !in.armed.Load() {
			t.Fatalf("unset after firing %d, with a lone run before each", i+1)
		}
	}
	// None comes: it rests after idleChecks firings.
	for i := range idleChecks {
		if !in.armed.Load() {
			t.Fatalf("unset after %d idle firings, want %d", i, idleChecks)
		}
		in.check()
	}
	if in.armed.Load() {
		t.Fatalf("still set after %d idle firings", idleChecks)
	}
	// A run that starts as it goes to rest, and found it still set, has it
	// set again (disarm).
	in.armed.Store(true)
	before := in.runs.Load()
	in.runs.Add(1)
	in.disarm(before)
	if !in.armed.Load() {
		t.Fatal("a run that started while the timer went to rest left it unset")
	}

	// A lone message that has not yet run for inlineFor stays.
	queued := newMessages("s", benchEntries(2), time.Now())
	waiting := queued[1]
	in.lone, in.next = queued, 1 // the first one runs, the second waits
	in.role.Store(roleInline)
	start := time.Now()
	in.started.Store(in.since(start))
	in.checkAt(start.Add(inlineFor / 2))
	if in.role.Load() != roleInline || !in.armed.Load() {
		t.Fatalf("handed over before inlineFor (role %d) or left unset", in.role.Load())
	}
	// One that has: the one not started goes to the handler goroutines,
	// the fetch loop to a new goroutine, and the fetcher rests.
	in.checkAt(start.Add(2 * inlineFor))
	if in.role.Load() != roleHanded {
		t.Fatalf("not handed over after 2×inlineFor: role %d", in.role.Load())
	}
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("handed over, but the fetch loop did not go on on a new goroutine within 10s")
	}
	if m, _ := r.jobs.pop(); m != waiting {
		t.Fatalf("the handler goroutines' queue got %v, want the message not started", m)
	}
	if in.armed.Load() {
		t.Error("the timer still set with the fetch loop handed over")
	}
	if !in.resting() {
		t.Error("lone messages not turned off after one turned out slow")
	}
	// Stopped with its fetch loop, it does nothing: it does not even look
	// at the runs (seen).
	in.over.Store(true)
	in.started.Store(0)
	seen := in.seen.Load()
	in.runs.Add(1)
	in.check()
	if in.seen.Load() != seen {
		t.Error("the timer looked at the lone runs after the fetch loop ended, and set itself again")
	}
}

// Hatches in a row turn lone messages off for twice as long each time, up to
// loneOffMost; lone messages that finish within inlineFor make the next
// hatch the first again.
func TestHatchesInARowTurnLoneMessagesOffLonger(t *testing.T) {
	t.Parallel()
	r := &engine{jobs: newJobQueue(64), loneOff: time.Second}
	in := &inliner{r: r, base: time.Now().Add(-time.Second), resume: func() {}}
	in.hatch = time.AfterFunc(time.Hour, func() {}) // never fires: checkAt is called by hand
	t.Cleanup(func() { in.hatch.Stop() })

	// hatch hands over a lone message that has run 2×inlineFor at now and
	// returns for how long lone messages are then off.
	now := time.Now()
	hatch := func() time.Duration {
		t.Helper()
		in.lone, in.next = newMessages("s", benchEntries(1), now), 0
		in.role.Store(roleInline)
		in.started.Store(in.since(now))
		now = now.Add(2 * inlineFor)
		in.checkAt(now)
		if in.role.Load() != roleHanded {
			t.Fatalf("not handed over after 2×inlineFor: role %d", in.role.Load())
		}
		if _, ok := r.jobs.pop(); !ok {
			t.Fatal("the message handed over is not in the handler goroutines' queue")
		}
		off := time.Duration(in.off.Load() - in.since(now))
		now = now.Add(off) // the next lone run comes once they are on again
		return off
	}

	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := hatch(); got != w {
			t.Fatalf("hatch %d in a row turned lone messages off for %s, want %s", i+1, got, w)
		}
	}
	in.ranInTime()
	if got := hatch(); got != time.Second {
		t.Fatalf("the hatch after lone messages ran in time turned them off for %s, want %s (engine.loneOff)", got, time.Second)
	}
	if got := hatch(); got != 2*time.Second {
		t.Fatalf("the hatch after that turned them off for %s, want %s", got, 2*time.Second)
	}
}

// publishBacklog adds n entries of type typ to the harness config's stream
// before a worker reads it.
func publishBacklog(t *testing.T, srv *testredis.Server, stream string, n int, typ string) {
	t.Helper()
	c := srv.Client(t)
	pipe := c.Pipeline()
	for i := range n {
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"type", typ, "data", strconv.Itoa(i)}})
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A backlog's first full read runs its first messages on the fetcher, to
// measure the handlers (fastBatch's probe), the rest on the handler
// goroutines, and their acknowledgements go with the next read, without
// BLOCK. Before batches ran there, only a read that drained the stream
// (its tail) could.
func TestBacklogProbesItsHandlersOnFetcher(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 64 // the first read brings more than loneMost
	cfg.LogLevel = "info"
	const n = 2000
	publishBacklog(t, srv, cfg.Streams[0], n, "fast")
	log := &pipelineLog{}
	client := srv.Client(t)
	client.AddHook(log)
	var early, handled atomic.Int64
	mux := NewMux()
	mux.HandleFunc("fast", func(_ context.Context, m *Message) error {
		// m.held is set for a message run on the fetcher (takeLone) and
		// cleared before one is handed over: cheaper than onFetcher, which
		// would make the handlers slow.
		if i, _ := strconv.Atoi(string(m.Data)); m.held != nil && i < n/2 {
			early.Add(1)
		}
		handled.Add(1)
		return nil
	})
	h := startWorker(t, srv, cfg, mux, WithRedis(client), withLoneOff(0))
	eventually(t, "every message handled and acknowledged", func() bool { return handled.Load() == n && h.pending() == 0 })
	if early.Load() == 0 {
		t.Fatalf("none of the first %d of a backlog of %d ran on the fetcher, want the first read's first %d at least", n/2, n, loneMost)
	}
	// Sent with the next read, which waits not (a busy stream's); a
	// lone message's go with a read with BLOCK.
	if !log.sent("xack", "xreadgroup-now") {
		t.Fatalf("no pipeline of an XACK and the next XREADGROUP without BLOCK; pipelines sent: %v", log.snapshot())
	}
	eventually(t, "every message counted as acked", func() bool { return h.outcome("fast", OutcomeAcked) == n })
}

// A backlog whose handlers are slow does not run one at a time on the
// fetcher: what a read tried there (a probe's first messages, or a read of
// a few) is handed to the handler goroutines after inlineFor, a probe's
// rest at once, and they run side by side.
func TestSlowBatchRunsSideBySide(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	const n, together = 200, 4
	publishBacklog(t, srv, cfg.Streams[0], n, "slow")
	var running atomic.Int64
	reached := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("slow", func(context.Context, *Message) error {
		if running.Add(1) >= together {
			once.Do(func() { close(reached) })
		}
		defer running.Add(-1)
		select {
		case <-release:
		case <-reached:
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d slow handlers of a backlog never ran at once within 10s (at most %d did): the batch stayed on the fetcher", together, running.Load())
	}
	close(release)
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
}

// fastBatch runs a batch on the fetcher when its handlers are expected to
// take at most half as long as its read, and batchMost; otherwise it
// reports a probe due once per batchProbeEvery. measured follows a faster
// run at once and a slower one a quarter of the way.
func TestFastBatch(t *testing.T) {
	in := &inliner{base: time.Now().Add(-time.Second)}
	check := func(what string, n int, took time.Duration, wantFast, wantProbe bool) {
		t.Helper()
		if fast, probe := in.fastBatch(n, took); fast != wantFast || probe != wantProbe {
			t.Fatalf("%s: fastBatch(%d, %s) = fast %t, probe %t; want %t, %t", what, n, took, fast, probe, wantFast, wantProbe)
		}
	}
	check("a read that waited, failed or cannot carry acknowledgements", 100, 0, false, false)
	check("handlers never measured", 100, time.Millisecond, false, true)
	in.probeAt.Store(in.since(time.Now()) + int64(batchProbeEvery)) // takeLone, when it takes the probe
	check("handlers never measured, within batchProbeEvery of a probe", 100, time.Millisecond, false, false)
	perMsg := func(want time.Duration) {
		t.Helper()
		if got := time.Duration(in.perMsg.Load()); got != want {
			t.Fatalf("perMsg = %s, want %s", got, want)
		}
	}
	in.measured(100, 100*time.Microsecond)
	perMsg(time.Microsecond)
	check("100 handlers of 1µs, a read of 1ms", 100, time.Millisecond, true, false)
	check("100 handlers of 1µs, a read of 150µs", 100, 150*time.Microsecond, false, false)
	check("10,000 handlers of 1µs, past batchMost", 10_000, 100*time.Millisecond, false, false)
	in.measured(10, 50*time.Microsecond) // 5µs each: a quarter of the way
	perMsg(2 * time.Microsecond)
	in.measured(10, 5*time.Microsecond) // 500ns each: at once
	perMsg(500 * time.Nanosecond)
	in.measured(0, time.Second)
	perMsg(500 * time.Nanosecond)
	in.probeAt.Store(in.since(time.Now()) - 1)
	check("handlers too slow for the read, their probe due", 1000, 100*time.Microsecond, false, true)
}
