package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

type xEntry = redis.XMessage

// opTimeout bounds one Redis write that records an outcome.
const opTimeout = 5 * time.Second

// engine is the runtime: it consumes the configured streams as one consumer
// of one group and promotes their due retries and delayed events. Build it
// with newEngine and run it with Run; Run is what worker.Run adds to its
// run group as the fetch/dispatch actor.
type engine struct {
	cfg      config.Config
	client   redis.UniversalClient
	consumer reclaim.Consumer // this consumer's claims and leases
	handler  Handler
	logger   *slog.Logger // with component=runtime
	base     *slog.Logger
	failLogs *logSampler // a few lines a second of each kind of failure (logsample.go)
	metrics  *Metrics
	live     *liveness

	streams []*streamState
	sem     *semaphore  // free handler slots: one per running or dispatched message
	running *handlerCap // handlers running at once, at most WORKER_CONCURRENCY (queue.go)
	jobs    *jobQueue
	ahead   *readAhead // read-ahead slots (readahead.go); nil when WORKER_READ_AHEAD is 0
	acks    *ackBuffer
	settles *settleBuffer  // failures waiting to be written (settlebatch.go)
	inPlace inPlaces       // retries waiting in place, by stream (inplace.go)
	answers atomic.Uint64  // reads Redis answered, all streams' (inplace.go)
	workers []*workerState // the handler goroutines' (the first WORKER_CONCURRENCY), then the fetchers' for a lone message (inline.go)
	lone    sync.WaitGroup // lone messages running on their fetchers
	loneOff time.Duration  // how long a fetcher runs no lone message after one turned out slow (inline.go)
	hatchAt time.Duration  // how long a read's lone messages run on the fetcher before the hatch; 0: inlineFor (tests set it: inliner.period)
	// chained is told of each message of a partition's key chained on a
	// fetcher behind the one that ran there (inliner.chain); draining, that
	// the shutdown's drain begins, the feeders stopped (Run). Tests only.
	chained, draining func()
	// secondRead is told the entries of each read of a stream's second
	// fetcher (fetchLoop); tests only.
	secondRead func(got int)

	handlerCtx     context.Context // outlives the fetch context; cancelled at the shutdown deadline
	cancelHandlers context.CancelFunc
	stopping       atomic.Bool // SIGTERM seen: not ready, fetching stops
	abandoned      atomic.Bool // shutdown deadline passed: unfinished work is handed over
	started        atomic.Bool
	hurry          chan struct{} // closed by Hurry: the shutdown deadline is now
	hurryOnce      sync.Once
	leaseMu        sync.Mutex              // a lease renewal and the shutdown hand-over never interleave
	startedAt      time.Time               // when Run began: own pending entries idle since before are the last run's
	renewing       map[string]*atomic.Bool // per stream: a lease renewal is in flight
	renewals       sync.WaitGroup          // lease renewals in flight, some given up on
	suspects       suspects                // entries to run one at a time (isolate.go)
	cancels        cancelMarks             // entries cancelled before they ran (cancel.go)

	// Partitioned streams and Redis Cluster: each nil when not in use.
	parts   *partitions    // partition ownership (partition.go)
	order   *orderGate     // per-key order on partitioned streams (ordered.go)
	cluster *clusterRoutes // slot map reloads after node failures (cluster.go)

	promote *promoter  // moves due retries and delayed events into the streams (promote.go)
	pauses  *pauses    // which streams are paused (pause.go)
	sched   *scheduler // publishes the periodic events (schedule.go); nil without a schedule

	classes map[string]*slotClass // per stream key read: its share of the slots (priority.go); nil without priorities

	health *redisHealth // probe answers and out-of-memory refusals (probe.go)
	probe  *prober      // pings Redis for readiness

	tracer trace.Tracer // makes a process span per message (tracing.go); nil with tracing off
}

type streamState struct {
	name       string
	groupReady atomic.Bool
	redisOK    atomic.Bool
	beat       *beat
	inline     *workerState   // where its fetcher runs a lone message (inline.go); nil: never
	second     *workerState   // where its second fetcher runs lone messages (fetchLoop); nil: it has none
	wake       chan readSizer // the fetcher's word to the second that the stream is backlogged, with its entries' size; one deep
}

// workerState is one handler goroutine. Its context is cancelled only when
// the message it runs loses its lease, and then replaced for the next one, so
// a message costs no context of its own.
type workerState struct {
	cur      atomic.Pointer[Message] // the message running, or nil
	leasedAt atomic.Int64            // unix ns: when the read that delivered cur, or its last lease renewal, was sent
	unleased atomic.Pointer[Message] // cur, once its entry is no longer pending (trimmed, or acknowledged elsewhere): not leased again
	lone     atomic.Bool             // a fetcher's: it runs lone messages (inline.go), maybe for a fetch loop that has ended

	mu   sync.Mutex
	ctx  *msgContext
	lost bool // cur's lease was lost: its outcome must not be recorded
}

// newEngine builds a runtime for cfg that reads with client and hands every
// message to h, normally a *Mux. Recover, Timeout, Logging and the metrics
// middleware are added around h here. metrics may be nil.
func newEngine(cfg config.Config, client redis.UniversalClient, h Handler, logger *slog.Logger, metrics *Metrics) *engine {
	if metrics == nil {
		metrics = NewMetrics(prometheus.NewRegistry())
	}
	base := logger
	logger = logger.With("component", "runtime")
	if mux, ok := h.(*Mux); ok {
		mux.freeze()
	}
	metrics.labelTypes(h) // only the Mux's types are labelled by name
	// Recover is innermost so that logs and metrics see a panic as an error.
	h = Recover()(h)
	// The handler timeout is the deadline of each handler goroutine's
	// msgContext (process), cheaper than the Timeout middleware's context.
	h = Logging(logger)(h)
	h = metrics.Instrument()(h)
	r := &engine{
		cfg: cfg, client: client, handler: h,
		consumer: reclaim.Consumer{Client: client, Group: cfg.Group, Name: cfg.Consumer}, logger: logger, base: base, metrics: metrics,
		live:     newLiveness(),
		sem:      newSemaphore(cfg.Concurrency),
		running:  newHandlerCap(cfg.Concurrency),
		jobs:     newJobQueue(cfg.Concurrency + cfg.ReadAhead),
		acks:     newAckBuffer(),
		settles:  newSettleBuffer(),
		workers:  make([]*workerState, cfg.Concurrency),
		hurry:    make(chan struct{}),
		suspects: suspects{wake: make(chan struct{}, 1), queued: map[suspect]bool{}},
		renewing: map[string]*atomic.Bool{},
		loneOff:  loneOff,
	}
	r.failLogs = newLogSampler(metrics.typeLabel, r.failuresNotLogged)
	for i := range r.workers {
		r.workers[i] = &workerState{}
	}
	if cfg.ReadAhead > 0 { // readahead.go
		r.ahead = newReadAhead(cfg.ReadAhead, r.sem)
	}
	r.sem.prio, r.classes = newPriorities(cfg) // priority.go: nil without weights or strict order
	r.cluster = newClusterRoutes(client)
	for _, s := range fetchedStreams(cfg) { // partition.go: the partitions are read while owned
		st := &streamState{name: s, beat: r.live.Register("fetch " + s)}
		if r.classes[s] == nil { // fetchLoop: a stream with priorities runs nothing on its fetcher
			st.inline = &workerState{}
			r.workers = append(r.workers, st.inline)
		}
		// fetchLoop: a second fetcher where batches may run on the fetcher,
		// not with priorities nor on a cluster (rawReads).
		if r.classes[s] == nil && r.rawReads() {
			st.second, st.wake = &workerState{}, make(chan readSizer, 1)
			r.workers = append(r.workers, st.second)
		}
		r.streams = append(r.streams, st)
	}
	for _, s := range streamKeys(cfg) {
		r.renewing[s] = &atomic.Bool{}
	}
	r.pauses = newPauses(cfg, client, base, metrics, r.live)
	r.health = newRedisHealth(logger)
	r.probe = &prober{client: client, cluster: r.cluster, health: r.health, beat: r.live.Register("probe")}
	oom := r.health.refusesWrites
	metrics.oom.Store(&oom)
	r.promote = newPromoter(client, streamKeys(cfg), cfg.PromoteInterval, base, metrics, r.live)
	if cfg.Partitions > 1 { // partition.go, ordered.go
		r.order = newOrderGate(gateDeps{
			consumer: r.consumer, logger: logger, failLogs: r.failLogs, count: r.count, freeSlots: r.release, leaseEvery: r.leaseEvery(),
			maxAttempts: cfg.MaxAttempts, retryBase: cfg.RetryBase, retryMax: cfg.RetryMax,
		}, streamKeys(cfg))
		r.parts = newPartitions(partitionDeps{
			cfg: cfg, client: client, logger: base, live: r.live, order: r.order, cluster: r.cluster, leaseEvery: r.leaseEvery(),
			takeOver: r.takeOver, fetchLoop: r.fetchLoop,
		})
		// A partition's fetcher runs lone messages and fast batches as a
		// stream's does (inline.go), on a worker state of its own that each
		// fetch loop of the partition, while it is owned, takes on.
		for _, pt := range r.parts.all {
			if r.classes[pt.s.name] == nil {
				pt.s.inline = &workerState{}
				r.workers = append(r.workers, pt.s.inline)
			}
		}
	}
	// Stored once r.workers is whole: a scrape may call it from now on,
	// while another engine on the same Metrics runs.
	running := func() int {
		n := 0
		for _, w := range r.workers {
			if w.cur.Load() != nil {
				n++
			}
		}
		return n
	}
	metrics.running.Store(&running)
	r.inPlace = newInPlaces(streamKeys(cfg), r.order.ordered) // inplace.go: not the ordered partitions
	inPlace := r.inPlace.len
	metrics.inPlace.Store(&inPlace)
	r.handlerCtx, r.cancelHandlers = context.WithCancel(context.Background())
	ready := func() bool { return r.Ready() == nil } // stored last: it reads what is built above
	metrics.ready.Store(&ready)
	return r
}

// liveness reports on the runtime's loops, for /healthz.
func (r *engine) liveness() *liveness { return r.live }

// Ready returns nil when the runtime can take work: Redis answered a probe
// lately (probe.go), every group exists, Redis answered the last read, and
// shutdown has not begun.
func (r *engine) Ready() error {
	if r.stopping.Load() {
		return errors.New("shutting down")
	}
	if err := r.health.answering(); err != nil { // probe.go
		return err
	}
	for _, s := range r.streams {
		if !s.groupReady.Load() {
			return fmt.Errorf("group %q on stream %q is not ready", r.cfg.Group, s.name)
		}
		if !s.redisOK.Load() {
			return fmt.Errorf("redis is not answering reads of stream %q", s.name)
		}
	}
	if r.parts != nil {
		return r.parts.ready() // partition.go
	}
	return nil
}

// Run consumes until ctx ends, then shuts down: fetching stops, running
// handlers get up to the shutdown timeout, acknowledgements are flushed, and
// what is still unfinished is handed over to the other consumers at once. It
// returns nil after a clean shutdown. An engine runs once.
func (r *engine) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("worker: engine.Run called twice")
	}
	defer r.cancelHandlers()
	r.startedAt = time.Now()
	checkEviction(ctx, r.client, r.logger)

	// Start, consumers of work before its producers: the handler pool, then
	// the loops that serve running handlers (acknowledgements, leases), then
	// the feeders that fill the pool and the promoter. Every background loop
	// is a component (component.go); the first two outlive ctx, and the stop
	// list below ends them.
	workersDone := r.startWorkers()
	acks := start(context.Background(), r.logger, componentFunc(r.ackLoop))
	settles := start(context.Background(), r.logger, componentFunc(r.settleLoop)) // settlebatch.go
	leases := start(context.Background(), r.logger, componentFunc(r.leaseLoop))
	probe := start(ctx, r.logger, r.probe)
	rc := r.newReclaimer()
	feeders := start(ctx, r.logger, r.feeders(rc)...)

	<-ctx.Done()
	shutdownStart := time.Now()
	r.stopping.Store(true)
	r.logger.Info("shutting down: fetching stopped, waiting for running handlers", "timeout", r.cfg.ShutdownTimeout)

	// Stop, in this order:
	//  1. the feeders and the promoter (their contexts ended with ctx):
	//     nothing new is read or claimed;
	//  2. the drain: running handlers finish, or at the deadline (or Hurry)
	//     their messages are handed over and the handlers cancelled; the
	//     job queue closes once no fetcher runs lone messages, which may
	//     still queue work (handlersDone);
	//  3. the leases, once no handler runs (or the work was handed over),
	//     and the renewals still in flight, so that none lands after step 4;
	//  4. the acknowledgements and the failures' retries and dead letters,
	//     flushed last of what handlers produced;
	//  5. the partitions, given up only once their acknowledgements are
	//     written, so that the next owner does not run them again;
	//  6. the consumer's heartbeat and, if it owns nothing, the consumer.
	feeders.stop()
	probe.stop()
	r.flushInPlace() // inplace.go: what waits goes to the delayed set, and failures from now on
	if r.draining != nil {
		r.draining()
	}
	r.drain(shutdownStart, r.handlersDone(workersDone)) // it closes the job queue once no fetcher runs lone messages
	leases.stop()
	r.renewals.Wait() // bounded by the client's read timeout
	settles.stop()
	acks.stop()
	r.failLogs.stop() // no failure comes now: the counts of lines left out, told
	if r.parts != nil {
		r.parts.leave() // partition.go
	}
	leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 2*time.Second)
	rc.Leave(leaveCtx)
	cancelLeave()
	r.logger.Info("shutdown complete", "took", time.Since(shutdownStart).Round(time.Millisecond))
	return nil
}

// startWorkers starts the handler goroutines, which run jobs until the job
// queue is closed and empty; the channel returned closes when all are done.
func (r *engine) startWorkers() <-chan struct{} {
	var workers sync.WaitGroup
	for i, w := range r.workers {
		w.ctx = newMsgContext(r.handlerCtx)
		if i >= r.cfg.Concurrency {
			continue // a fetcher's (inline.go)
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			r.work(w)
		}()
	}
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	return done
}

// work runs jobs on w until the job queue is closed and empty.
func (r *engine) work(w *workerState) {
	defer func() { w.mu.Lock(); w.ctx.release(); w.mu.Unlock() }()
	for {
		m, ok := r.jobs.pop()
		if !ok {
			return
		}
		for m != nil {
			if m.retryDue {
				// It ran on a fetcher and failed; its key's retry in place
				// waits here, not there (ordered.go: doneInline).
				m.retryDue = false
			} else {
				r.running.take() // waits only while a fetcher runs lone messages on the last free one (inline.go)
				r.process(w, m)
				r.running.give()
				if r.ahead != nil {
					r.ahead.done() // finished: the pace counts what handlers finish, not what they start
				}
			}
			var next *Message
			var again bool
			if r.order != nil { // ordered.go: the next message of m's key, or m's retry in place, runs here after m
				next, again = r.order.done(m)
			}
			if !again { // a retry in place keeps m's slot
				r.sem.release(1)
			}
			m = next
		}
	}
}

// handlersDone closes the job queue once no lone message runs on a
// fetcher (inline.go), and returns a channel closed once the handler
// goroutines are done too (workersDone). Called once the fetchers have
// stopped: no lone message starts after. A lone run the hatch moved the
// fetch loop away from may still queue work for the handler goroutines —
// the lone messages not started, the next message of a partition's key, a
// failed one's retry in place — so the queue stays open until it ends.
func (r *engine) handlersDone(workersDone <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		r.lone.Wait()
		r.jobs.close()
		<-workersDone
		for _, w := range r.workers[r.cfg.Concurrency:] {
			w.mu.Lock()
			w.ctx.release()
			w.mu.Unlock()
		}
		close(done)
	}()
	return done
}

// newReclaimer builds the reclaimer of this consumer's streams.
func (r *engine) newReclaimer() *reclaim.Reclaimer {
	opts := reclaim.Options{
		Streams: streamKeys(r.cfg), Group: r.cfg.Group, Consumer: r.cfg.Consumer,
		MinIdle: r.cfg.ReclaimMinIdle, Interval: r.cfg.ReclaimInterval, Count: r.cfg.ReclaimCount,
		GoneAfter: r.cfg.ConsumerGoneAfter, IsolateAfter: r.isolateAfter(),
	}
	owned := func() []string { return r.cfg.Streams }
	if r.parts != nil {
		owned = r.parts.ownedFunc() // partition.go: only the partitions this consumer reads
	}
	opts.Owned = func() []string { return r.pauses.unpaused(owned()) } // pause.go: nothing is claimed in a paused stream
	return reclaim.New(r.client, opts, sink{r}, r.base, r.metrics.Reclaim, r.live.Register("reclaim").beat)
}

// feeders are the components that hand work to the pool, each until its
// context ends: a fetcher per stream (and its second: fetchLoop), the partitions (which run a fetcher per
// partition owned), the reclaimer and the suspects' one-at-a-time loop; the
// promoter, which moves due retries back into the streams; the pause
// poller, whose first answer the fetchers wait for (pause.go); and, with a
// schedule, the scheduler, which publishes the periodic events.
func (r *engine) feeders(rc *reclaim.Reclaimer) []component {
	var cs []component
	for _, s := range r.streams {
		cs = append(cs, componentFunc(func(ctx context.Context) error { r.fetchLoop(ctx, s); return nil }))
	}
	if r.parts != nil {
		cs = append(cs, r.parts) // partition.go: takes, reads and gives up partitions
	}
	for _, p := range r.inPlace { // inplace.go
		cs = append(cs, componentFunc(func(ctx context.Context) error { return r.inPlaceLoop(ctx, p) }))
	}
	cs = append(cs, rc, componentFunc(r.isolateLoop), r.promote, r.pauses, r.newTrimmer()) // trim.go
	if r.ahead != nil {
		cs = append(cs, r.ahead) // readahead.go
	}
	if r.sched != nil {
		cs = append(cs, r.sched) // schedule.go
	}
	return cs
}

// drain waits for the running handlers until the shutdown timeout, counted
// from start, or Hurry. Then it hands the unfinished messages over to the
// other consumers, cancels their handlers and gives them a short grace.
func (r *engine) drain(start time.Time, workersDone <-chan struct{}) {
	deadline := time.NewTimer(r.cfg.ShutdownTimeout - time.Since(start))
	defer deadline.Stop()
	select {
	case <-workersDone:
		return
	case <-r.hurry:
	case <-deadline.C:
	}
	r.leaseMu.Lock()
	r.abandoned.Store(true)
	r.handOverInFlight()
	r.leaseMu.Unlock()
	r.cancelHandlers()
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	select {
	case <-workersDone:
	case <-grace.C:
		r.logger.Error("handlers ignored cancellation at the shutdown deadline; exiting without them")
	}
}

// Hurry ends a running shutdown's drain now, as if the deadline had passed:
// unfinished work is handed over and its handlers are cancelled. A second
// SIGTERM does this.
func (r *engine) Hurry() { r.hurryOnce.Do(func() { close(r.hurry) }) }

// process runs one message on worker w and records its outcome.
func (r *engine) process(w *workerState, m *Message) {
	if m.done != nil {
		defer close(m.done)
	}
	if r.abandoned.Load() {
		if m.retried {
			r.inPlace.forget(m)
		}
		r.handOver(m.Stream, []string{m.ID})
		r.count(m, OutcomeHandedOver)
		return
	}
	w.mu.Lock()
	ctx := w.ctx
	w.mu.Unlock()
	// The lease runs from the delivery, not from now: the entry has been
	// idle since (at the latest) the read that delivered it was sent. One
	// that waited a lease period for a handler (read ahead behind handlers
	// that turned slow, or behind its key) is confirmed as ours first.
	now := time.Now()
	if !m.readAt.IsZero() && now.Sub(m.readAt) >= r.leaseEvery() {
		if !r.confirmOne(m) {
			if m.retried {
				r.inPlace.forget(m)
			}
			return // another consumer's now, or not confirmed: it stays pending for a reclaim pass or the next owner
		}
		now = time.Now()
	}
	leased := m.readAt
	if leased.IsZero() {
		leased = now
	}
	w.leasedAt.Store(leased.UnixNano())
	m.started = now
	w.cur.Store(m)
	ctx.start(now, r.cfg.HandlerTimeout)
	var hctx context.Context = ctx
	var span trace.Span
	if r.tracer != nil { // tracing.go: off, a message costs no span
		hctx, span = r.startProcess(ctx, m)
	}
	err := r.handler.HandleMessage(hctx, m)
	w.cur.Store(nil)
	if m.retried {
		// inplace.go: it waited, and ran, unseen by our reclaim passes; its
		// outcome, written or queued below, is seen by them from now on.
		r.inPlace.forget(m)
	}
	reusable := ctx.finish()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("handler timed out after %s: %w", r.cfg.HandlerTimeout, err)
	}
	w.mu.Lock()
	lost := w.lost
	w.lost = false
	if !reusable || lost {
		ctx.release()
		w.ctx = newMsgContext(r.handlerCtx)
	}
	w.mu.Unlock()
	if lost && err != nil {
		// Another consumer owns it now; recording a retry would ack its work.
		r.count(m, OutcomeLeaseLost)
		if span != nil {
			endProcess(span, err, OutcomeLeaseLost)
		}
		return
	}
	outcome := r.complete(hctx, m, err)
	if span != nil {
		endProcess(span, err, outcome)
	}
}

// complete acknowledges a success, or records a failure as a retry or a dead
// letter, each atomically with the acknowledgement, and returns the outcome.
// Its logs are written with logCtx, which holds the message's span, if any.
func (r *engine) complete(logCtx context.Context, m *Message, err error) string {
	if err == nil && m.effects != nil { // effects.go: committed with the acknowledgement, or refused
		if err = m.effects.err; err != nil {
			err = Permanent(err)
		} else if len(m.effects.cmds) > 0 {
			return r.commitEffects(logCtx, m)
		}
	}
	if err == nil {
		var dk string
		if r.cfg.DedupeWindow > 0 && m.IdempotencyKey != "" {
			dk = wire.DedupeKey(m.Stream, m.IdempotencyKey)
		}
		a := ackReq{stream: m.Stream, id: m.ID, typ: m.Type, dedupe: dk, outcome: OutcomeAcked}
		switch {
		case m.settle:
			r.ackNow(a)
		case m.held != nil: // inline.go: sent with the fetcher's next read
			m.held.hold(a)
		default:
			r.ack(a)
		}
		return OutcomeAcked
	}
	if r.abandoned.Load() && r.handlerCtx.Err() != nil {
		// Cancelled by the shutdown deadline: it was handed over, not failed.
		r.count(m, OutcomeHandedOver)
		return OutcomeHandedOver
	}
	if r.order != nil && r.order.hold(m, err) { // ordered.go: a keyed message on a partitioned stream is retried in place
		if errors.As(err, new(*DelayError)) {
			return OutcomeDelayed
		}
		return OutcomeRetried
	}
	var de *DelayError
	dead := IsPermanent(err) || (m.Attempt >= r.cfg.MaxAttempts && !errors.As(err, &de))
	delay, next, outcome := backoff(m.Attempt, r.cfg.RetryBase, r.cfg.RetryMax), m.Attempt+1, OutcomeRetried
	if errors.As(err, &de) {
		delay, next, outcome = de.After, m.Attempt, OutcomeDelayed
	}
	var fields []string
	if !dead {
		fields = retryFields(m, next)
		if len(fields)/2 > wire.MaxFields { // the copy could never be promoted (settle.go)
			err = fmt.Errorf("not retried: a copy would have %d field/value pairs, more than wire.MaxFields (%d): %w", len(fields)/2, wire.MaxFields, err)
			dead = true
		}
	}
	if !dead && r.health.outOfMemory() { // probe.go
		// Redis refuses writes for want of memory: a copy would add to
		// what it cannot hold. The entry stays pending and runs again once
		// reclaimed; it costs no memory meanwhile. Nor is it retried in
		// place: handlers failing for the same want would spend their
		// attempts in a few backoffs.
		r.logger.WarnContext(logCtx, "message failed; retry held back while redis is out of memory, it stays pending", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "error", firstLine(err.Error()))
		r.count(m, OutcomeUnrecorded)
		return OutcomeUnrecorded
	}
	if !dead && r.retryInPlace(m, fields, outcome, delay, err) { // inplace.go: its entry stays pending, and it waits here
		r.logRetry(logCtx, m.Stream, m.ID, m.Type, outcome, m.Attempt, delay, err, true)
		r.count(m, outcome)
		return outcome
	}
	s := settleReq{stream: m.Stream, id: m.ID, typ: m.Type, attempt: m.Attempt, cause: err, logCtx: logCtx}
	now := time.Now()
	if dead {
		s.dead, s.outcome, s.fields = true, OutcomeDead, r.deadLetterFields(m, err, now)
	} else {
		s.outcome, s.delay, s.due, s.envelope = outcome, delay, now.Add(delay).UnixMilli(), wire.EncodeEnvelope(m.ID, fields)
	}
	if m.settle {
		return r.settleNow(&s)
	}
	// settlebatch.go: written with others' in one script call; the entry
	// stays pending, and is not reclaimed here, until then.
	if !r.settles.add(s) {
		r.count(m, OutcomeUnrecorded)
		return OutcomeUnrecorded
	}
	return s.outcome
}

// retryFields are the fields of m's retried copy, as attempt.
func retryFields(m *Message, attempt int) []string {
	return append(m.copyFields(wire.FieldAttempt, wire.FieldOriginID), wire.FieldAttempt, itoa(attempt), wire.FieldOriginID, m.OriginID)
}

func (r *engine) count(m *Message, outcome string) {
	r.metrics.finished(m.Stream, m.Type, outcome, 1)
}

// handOverInFlight makes every message still running claimable by the other
// consumers at once, by setting its idle time past the reclaim min-idle.
func (r *engine) handOverInFlight() {
	byStream := map[string][]string{}
	for _, w := range r.workers {
		if m := w.cur.Load(); m != nil {
			byStream[m.Stream] = append(byStream[m.Stream], m.ID)
		}
	}
	for s, ids := range byStream {
		r.handOver(s, ids)
	}
}

func (r *engine) handOver(stream string, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	idle := (r.cfg.ReclaimMinIdle + 24*time.Hour).Milliseconds()
	args := []any{"XCLAIM", stream, r.cfg.Group, r.cfg.Consumer, 0}
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, "IDLE", idle, "JUSTID")
	if err := r.client.Do(ctx, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		r.logger.Error("could not hand over unfinished messages; others take them after the reclaim min-idle",
			"stream", stream, "count", len(ids), "error", err)
		return
	}
	r.logger.Warn("shutdown deadline passed; unfinished messages handed over to other consumers",
		"stream", stream, "count", len(ids), "ids", strings.Join(ids, ","))
}

func itoa(n int) string { return strconv.Itoa(n) }

// firstLine keeps log lines short: a panic's stack goes to the dead letter,
// not into every retry's log line.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (stack trimmed)"
	}
	return s
}
