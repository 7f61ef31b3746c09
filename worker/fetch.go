package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/reclaim"
)

// fetcher reads one stream for this consumer. It keeps what one pass over
// the stream needs between reads: where a group created now starts, the
// consecutive Redis failures, the replay cursor and the read sizes. The
// fetch loop (and a stream's second one: fetchLoop) and a partition's
// take-over each run one.
type fetcher struct {
	r     *engine
	s     *streamState
	log   *slog.Logger
	level slog.Level // of a failure's log line
	start string     // where a group created now starts reading

	failures int       // consecutive Redis failures
	cursor   string    // "0" … an ID: replaying own pending entries; ">": reading new ones
	idle     bool      // the last read drained the stream
	trickle  bool      // the last read brought one entry or none, or drained the stream with a few (trickling)
	last     int       // the entries the last read brought
	more     bool      // the last read was full: the stream has entries to read (for the priorities)
	sizes    readSizer // the bytes of recent reads' entries
	known    bool      // the pause state was known before a read
	types    typeNames // one copy of each type name its reads brought (xread.go)
	reads    groupReader

	// Per-key order after a failed read (ordered partitions only): a read
	// whose reply was lost may have been delivered all the same, its
	// entries now pending for this consumer unseen. Reading on with ">"
	// would run the key's later messages first, so the fetcher reads
	// nothing new until such entries are idle for a min-idle (running and
	// waiting ones are leased, so never are), then runs its own pending
	// ones before reading on.
	resyncAt  time.Time // when the own pending list is to be replayed; zero: no need
	resyncing bool      // replaying own pending entries idle for a min-idle

	pause      *pauseState        // whether the stream is paused (pause.go)
	class      *slotClass         // the stream's share of the slots (priority.go); nil without priorities
	backlogged bool               // told the priorities that the stream has entries to read
	slots      prometheus.Counter // the slots its reads filled, of its WORKER_STREAMS entry

	second  bool          // the stream's second fetcher: it reads only while the stream is backlogged (fetchLoop)
	in      *inliner      // runs lone messages and fast batches on the fetcher (inline.go); nil for a take-over's and a stream's with priorities
	lone    bool          // the last read's messages, or a probe's first ones, are to run on the fetcher (inline.go)
	took    time.Duration // how long the last read took, sent to parsed, when it went without BLOCK and raw; else 0 (inline.go: fastBatch)
	waiting func()        // called every second while the loop waits for a slot: the stream's beat, and held acknowledgements sent
}

func (r *engine) newFetcher(s *streamState, level slog.Level) *fetcher {
	start := "0"
	if r.cfg.GroupStart == "latest" {
		start = "$"
	}
	pause := r.pauses.of(s.name)
	f := &fetcher{
		r: r, s: s, log: r.logger.With("stream", s.name), level: level, start: start, cursor: "0", idle: true, types: typeNames{},
		pause: pause, class: r.classes[s.name], slots: r.metrics.Slots.WithLabelValues(pause.stream),
	}
	f.waiting = func() { s.beat.beat(); f.releaseHeld() }
	return f
}

// setBacklog tells the priorities, when there are any, whether the stream
// has entries to read.
func (f *fetcher) setBacklog(on bool) {
	if f.class != nil && on != f.backlogged {
		f.backlogged = on
		f.r.sem.backlog(f.class, on)
	}
}

// paused waits while the stream is paused (and, at first, until its pause
// state is known), reporting whether it did. A paused stream is not an
// outage: Redis answered the poll that said so.
func (f *fetcher) paused(ctx context.Context) bool {
	if !f.pause.paused.Load() && f.known {
		return false
	}
	f.setBacklog(false)
	f.releaseHeld() // inline.go
	waited := f.r.pauses.wait(ctx, f.pause, f.s.beat)
	f.known = true
	if ctx.Err() == nil && waited && !f.second { // readiness is the first fetcher's to tell
		f.ok()
	}
	return waited
}

// fail records a failed Redis call and waits before the next try, longer
// after each failure in a row.
func (f *fetcher) fail(ctx context.Context, what string, err error) {
	f.failures++
	f.setBacklog(false)   // the priorities hold no slots for it while it waits
	if ctx.Err() == nil { // a read cut short by shutdown is not a failure
		f.r.metrics.redisError(OpFetch)
	}
	f.s.redisOK.Store(false)
	f.r.cluster.failed(err) // cluster.go: a dead primary's slots move to its replica
	wait := retryWait(f.failures)
	f.log.Log(ctx, f.level, what, "error", err, "failures", f.failures, "retry_in", wait.Round(time.Millisecond))
	sleepCtx(ctx, wait)
}

// ok records that Redis answered.
func (f *fetcher) ok() {
	if f.failures > 0 {
		f.log.Info("redis reachable again", "after_failures", f.failures)
	}
	f.failures = 0
	f.s.redisOK.Store(true)
	f.r.answers.Add(1) // inplace.go: Redis answered since a retry in place failed
}

// ensureGroup creates the group (and the stream) with a command sent under
// cctx unless it is known to exist, and reports whether it exists now; a
// failure has been waited out, or ctx ended.
func (f *fetcher) ensureGroup(ctx, cctx context.Context) bool {
	if f.s.groupReady.Load() {
		return true
	}
	if err := ensureGroup(cctx, f.r.client, f.s.name, f.r.cfg.Group, f.start); err != nil {
		f.fail(ctx, "creating consumer group", err)
		return false
	}
	f.s.groupReady.Store(true)
	return true
}

// fetchLoop reads one stream for this consumer: first its own pending entries
// (left by an earlier run of the same consumer), then new ones. A read asks
// for no more entries than there are free handler slots and read-ahead
// slots (readahead.go: what the handlers finish in about 20 ms), so nothing
// waits in memory long enough for its idle time to matter, nor for more than
// readSizer expects to fit in the read budget.
//
// A stream whose messages may run on its fetcher (inline.go) has a second
// fetcher, which reads only while the stream is backlogged: woken by a
// full read of the first whose batch runs on the fetcher, it reads without
// BLOCK until a read of its own drains the stream or goes to the handler
// goroutines, and then rests. Each runs its fast batches itself, so while
// one runs a batch the other's read is in Redis: one fetcher's reads,
// handlers and acknowledgements take turns, as in a loop that reads,
// handles and acknowledges, and Redis and the worker each waited on the
// other. Not with priorities, nor on a cluster, whose reads are not parsed
// raw and whose batches never run on the fetcher (newEngine).
func (r *engine) fetchLoop(ctx context.Context, s *streamState) {
	f := r.newFetcher(s, slog.LevelError)
	if s.inline == nil || f.class != nil {
		f.run(ctx)
		return
	}
	if s.second != nil {
		second := r.newFetcher(s, slog.LevelDebug)
		second.second, second.cursor = true, ">"
		done := make(chan struct{})
		go func() {
			defer close(done)
			second.runInline(ctx, s.second)
		}()
		defer func() { <-done }()
	}
	f.runInline(ctx, s.inline) // inline.go
}

// run is the fetch loop. It returns true once ctx has ended, false when it
// hands the loop over to another goroutine (inline.go) after running a lone
// message.
func (f *fetcher) run(ctx context.Context) bool {
	r := f.r
	// Reads are not cancelled mid-flight: entries a cancelled read was given
	// would sit in our pending list unseen. BLOCK is finite, so the loop
	// notices ctx within one block period.
	rctx := context.WithoutCancel(ctx)
	defer f.setBacklog(false)
	for ctx.Err() == nil {
		if f.second && f.idle && !f.rest(ctx) {
			return true
		}
		f.s.beat.beat()
		if f.second && !f.s.groupReady.Load() {
			f.idle = true // the first fetcher creates it
			continue
		}
		if !f.s.groupReady.Load() {
			f.releaseHeld() // inline.go
			if !f.ensureGroup(ctx, rctx) {
				continue
			}
			f.start = "0" // a group recreated after its stream was deleted reads all of it
			f.ok()
		}
		if f.paused(ctx) { // pause.go: one atomic load unless paused
			continue
		}
		if f.waitResync(ctx) {
			continue
		}
		most := f.sizes.count(r.cfg.FetchCount, r.readBudget())
		if f.failures > 0 {
			// Redis failed the last read (a primary down): the next one
			// holds one slot, not those the other streams' reads need.
			most = 1
		}
		backlog := !f.idle && f.cursor == ">"
		f.setBacklog(f.more && f.cursor == ">")
		n := r.acquireFor(ctx, f.class, f.waiting, backlog, most)
		if n == 0 {
			return true
		}
		if ctx.Err() != nil { // select picked a freed slot over a shutdown that came first
			r.release(n)
			return true
		}
		if f.cursor != ">" {
			f.replayOwn(ctx, rctx, n)
			continue
		}
		f.readNew(ctx, rctx, n)
		if f.lone && !f.runLone() { // inline.go
			return false
		}
	}
	return true
}

// rest waits, the held acknowledgements sent, until the stream's first
// fetcher finds it backlogged (second fetchers only); false when ctx ended
// first. A word sent while it read is dropped first: its size estimate is
// older than the reads since, which may have found the entries grown, and
// the stream it said was backlogged has since been drained. The first
// fetcher's next full read sends another.
func (f *fetcher) rest(ctx context.Context) bool {
	f.releaseHeld() // inline.go
	select {
	case <-f.s.wake:
	default:
	}
	select {
	case f.sizes = <-f.s.wake:
		f.idle = false
		return true
	case <-ctx.Done():
		return false
	}
}

// wakeSecond wakes the stream's second fetcher, if it rests, when a read
// without BLOCK came back full, its batch runs on the fetcher (a batch
// handed to the handler goroutines leaves the fetcher free to read on) and
// the two fetchers' reads together stay within the read budget (pairable).
func (f *fetcher) wakeSecond() {
	if !f.pairable() {
		return
	}
	select {
	case f.s.wake <- f.sizes:
	default:
	}
}

// pairable reports whether two of the stream's reads, each of up to
// WORKER_FETCH_COUNT entries of the size recent ones had, fit in one read
// budget together: the memory of a stream's reads stays about the budget
// with a second fetcher (readSizer). Not before an entry's size is known.
func (f *fetcher) pairable() bool {
	return f.sizes.perEntry > 0 && 2*f.r.cfg.FetchCount*f.sizes.perEntry <= f.r.readBudget()
}

// readNew reads new entries on the n slots reserved: what is there with
// every free slot; when nothing is, it waits for the next entry holding one
// slot, not all of them, so that the reclaimer and other streams can use the
// rest.
//
// When the stream trickles (trickling: the last read brought one entry or
// none, or drained the stream with a few), that is one read: a blocking one
// that asks for as many entries as there are slots reserved while holding
// one, the entries it brings taking their slots when they come
// (borrowed when others took them meanwhile: they then wait in the job
// queue, as read ahead). On a quiet stream, a message or a few that came
// together are then one round trip, not two (a read that finds nothing,
// then the one that waits): at 5,000 msgs/s sent in small bursts, a third
// of the reads were such empty ones while only a read of one entry counted
// as trickling. Streams with priorities keep the two: a borrowed slot would
// let a lower stream's entries run ahead of a higher one's.
//
// Otherwise (the last read was full, or brought more than a few, and always
// for a stream with priorities), a read without BLOCK comes first: parsed
// here (xread.go) off a cluster, where it is the cheaper read. After a read
// of a few, the blocking read asks for at most 2*trickleMost entries: when
// entries came faster than that meanwhile, it is full, and the read after it
// goes without BLOCK.
func (f *fetcher) readNew(ctx, rctx context.Context, n int) {
	r := f.r
	if f.second {
		sent := time.Now()
		batch, err := f.read(rctx, n, -1, sent)
		f.took = 0
		if err == nil {
			f.took = time.Since(sent)
		}
		f.last = len(batch)
		if r.secondRead != nil {
			r.secondRead(len(batch))
		}
		f.handle(ctx, batch, err, n, n)
		f.idle = err != nil || len(batch) < n || !f.lone || !f.pairable()
		return
	}
	wide := f.idle && f.trickle && f.class == nil
	if !wide && (f.idle || r.rawReads()) {
		sent := time.Now()
		batch, err := f.read(rctx, n, -1, sent)
		if err != nil || len(batch) > 0 {
			f.took = 0
			if err == nil && r.rawReads() {
				f.took = time.Since(sent)
			}
			f.idle = len(batch) < n
			f.more = !f.idle
			f.trickle = trickling(len(batch), n)
			f.last = len(batch)
			f.handle(ctx, batch, err, n, n)
			if f.more && f.lone && f.s.wake != nil {
				f.wakeSecond()
			}
			return
		}
		r.release(n - 1)
		n = 1
	}
	count := n
	if wide && f.last > 1 {
		// Entries came together: more may come at once, and a blocking
		// read is parsed by go-redis. A full one is followed by a read
		// without BLOCK, parsed here.
		count = min(count, 2*trickleMost)
	}
	if n > 1 && f.class == nil {
		r.release(n - 1)
		n = 1
	}
	sent := time.Now()
	batch, err := f.read(rctx, count, r.cfg.Block, sent)
	f.took = 0 // it waited: no measure of a read (fastBatch)
	if len(batch) > n {
		r.sem.borrow(len(batch) - n)
		n = len(batch)
	}
	f.idle = count == 1 || len(batch) < count
	f.more = len(batch) == count
	f.trickle = trickling(len(batch), count)
	f.last = len(batch)
	f.handle(ctx, batch, err, n, count)
}

// trickleMost is the most entries a read that drained the stream may bring
// for the stream to count as trickling. A blocking read is parsed by
// go-redis, about half a microsecond per entry dearer than a read parsed
// from the raw reply (xread.go), and an empty read costs a round trip: the
// blocking read is the cheaper one for a few entries, not for a hundred.
const trickleMost = 16

// trickling reports whether a read that asked for asked entries and got got
// leaves the stream trickling: one entry or none, or a few that drained it.
func trickling(got, asked int) bool { return got <= 1 || got < asked && got <= trickleMost }

// read reads up to n new entries of the stream, blocking up to block (not
// at all when negative), as Messages read with a command sent at sent.
func (f *fetcher) read(ctx context.Context, n int, block time.Duration, sent time.Time) ([]*Message, error) {
	r, stream := f.r, f.s.name
	if f.holding() && (block >= 0 && f.in.maxBlock > 0 || block < 0 && r.rawReads()) {
		return f.readAcking(ctx, n, block, sent) // inline.go
	}
	f.releaseHeld()
	if block < 0 && r.rawReads() {
		return r.readNow(ctx, stream, n, &f.sizes, sent, f.types)
	}
	res, err := f.reads.read(ctx, r, stream, n, block)
	return f.readResult(sent, res, err)
}

// groupReader sends go-redis's XReadGroup of new entries, each at most
// once. go-redis resends a command whose connection broke after it went out
// (up to MaxRetries times, MaxRedirects on a cluster): when Redis had run
// the read, the resent one reads on past what it delivered, and those
// entries stay pending for this consumer, unseen, until a reclaim runs them
// after the ones read later. Sent once, the read's failure reaches the
// fetcher, which on an ordered partition runs them first (waitResync).
//
// A pipeline that is never sent builds the command: that is how it gets the
// read deadline go-redis gives a blocking read. Each fetcher keeps its own,
// and puts a placeholder in the slot the read took, so that the pipeline
// does not hold the last read's reply; a pipeline made per read cost 7
// allocations.
type groupReader struct {
	pipe redis.Pipeliner
	once sendonce.Cmd
}

// placeholder fills a groupReader's pipeline slot between reads.
var placeholder = redis.NewStatusCmd(context.Background(), "ping")

func (g *groupReader) read(ctx context.Context, r *engine, stream string, n int, block time.Duration) ([]redis.XStream, error) {
	if g.pipe == nil {
		g.pipe = r.client.Pipeline()
	}
	cmd := g.pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.cfg.Group, Consumer: r.cfg.Consumer, Streams: []string{stream, ">"}, Count: int64(n), Block: block,
	})
	g.pipe.Discard()
	_ = g.pipe.Process(ctx, placeholder)
	g.pipe.Discard()
	g.once.Cmder = cmd
	_ = r.client.Process(ctx, &g.once)
	g.once.Cmder = nil
	return cmd.Result()
}

// readResult is the Messages of a read's go-redis reply.
func (f *fetcher) readResult(sent time.Time, res []redis.XStream, err error) ([]*Message, error) {
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return newMessages(f.s.name, res[0].Messages, sent), nil
}

// handle dispatches one read's messages, of asked entries, on the n slots
// reserved for it and releases the slots it did not use. A few that
// drained the stream, a batch of fast handlers, or a probe's first
// messages may be kept to run on the fetcher (takeLone, inline.go).
func (f *fetcher) handle(ctx context.Context, batch []*Message, err error, n, asked int) {
	r := f.r
	if err != nil && f.second {
		// The first fetcher reads the same stream, and retries, logs and
		// tells readiness as it fails; the second rests until a read of
		// the first is full.
		r.release(n)
		if ctx.Err() == nil {
			r.metrics.redisError(OpFetch)
		}
		f.log.Debug("second fetcher's read failed; it rests", "error", err)
		return
	}
	if err != nil {
		r.release(n)
		if isNoGroup(err) {
			f.s.groupReady.Store(false)
			r.logger.Warn("stream or group is gone; recreating it", "stream", f.s.name, "group", r.cfg.Group, "error", err)
			return
		}
		if f.cursor != ">" {
			f.fail(ctx, "replaying own pending entries", err)
			return
		}
		f.armResync(err)
		f.fail(ctx, "reading stream", err)
		return
	}
	if f.second {
		r.answers.Add(1) // inplace.go; readiness is the first fetcher's to tell
	} else {
		f.ok()
	}
	f.sizes.observe(batchBytes(batch), len(batch))
	if r.ahead != nil && len(batch) > 0 {
		r.ahead.entry.Store(int64(f.sizes.perEntry))
	}
	run, handed := r.admit(ctx, batch, n)
	f.slots.Add(float64(handed))
	if !f.takeLone(run, handed, len(batch), asked) {
		r.jobs.push(run...)
	}
}

// armResync holds new reads of an ordered partition back (waitResync) after
// a read or a replay's claim failed with err, when that command may have
// given this consumer entries it did not see: it reached Redis
// (sendonce.Unsent) and Redis did not answer it with an error. An error
// reply means the read did not run, or the claim script stopped at its
// first call (its calls fail alike for every entry: NOPERM, WRONGTYPE,
// NOGROUP), so nothing was taken; a failover's CLUSTERDOWN or TRYAGAIN then
// does not put off the replay the read cut by the failover set up.
func (f *fetcher) armResync(err error) {
	var reply redis.Error
	if f.r.order.ordered(f.s.name) && !sendonce.Unsent(err) && !errors.As(err, &reply) {
		f.resyncAt = time.Now().Add(f.r.cfg.ReclaimMinIdle + f.r.leaseEvery())
	}
}

// waitResync holds new reads back after a failed read of an ordered
// partition until entries it may have delivered unseen are idle for a
// min-idle, then turns the fetcher to replaying them (replayOwn). A replay
// whose claim failed waits the same way, then goes on from where it was:
// the entries that claim may have taken are this consumer's, their idle
// time reset, and only idle again can they be told from the entries it is
// running. It reports whether it waited.
func (f *fetcher) waitResync(ctx context.Context) bool {
	if f.resyncAt.IsZero() {
		return false
	}
	if wait := time.Until(f.resyncAt); wait > 0 {
		sleepCtx(ctx, min(wait, time.Second)) // beating between sleeps
		return true
	}
	f.resyncAt, f.resyncing = time.Time{}, true
	if f.cursor == ">" {
		f.cursor = "0"
	}
	return true
}

// replayOwn takes the next entries of this consumer's own pending list,
// left by an earlier run under the same name, after the cursor: as many as
// the n slots reserved, and only those idle since before this run started
// (the reclaimer may have taken some already). They go through
// reclaim.Consumer.Claim as claimed entries do, so that suspects run one at
// a time and a crash loop is charged to the entry that causes it. On an
// ordered partition a suspect runs alone and is waited for, and the entries
// after it wait until it is done, as in a take-over (takeOver): queued for
// later, it would run after its key's later messages.
func (f *fetcher) replayOwn(ctx, rctx context.Context, n int) {
	r, s := f.r, f.s
	start := "-"
	if f.cursor != "0" {
		start = "(" + f.cursor
	}
	pend, err := r.client.XPendingExt(rctx, &redis.XPendingExtArgs{
		Stream: s.name, Group: r.cfg.Group, Consumer: r.cfg.Consumer, Start: start, End: "+", Count: int64(n),
	}).Result()
	if err != nil { // a read only: nothing was taken
		f.handle(ctx, nil, err, n, n)
		return
	}
	var claimed reclaim.Claimed
	upto, alone := len(pend), false // this step covers pend[:upto]; alone: one suspect, waited for
	if len(pend) > 0 {
		// At start, what an earlier run left: idle since before this run.
		// After a failed read (waitResync), what this run was delivered
		// unseen: idle for a min-idle, as the reclaimer takes, and not
		// handled already with its acknowledgement waiting.
		minIdle, done := time.Since(r.startedAt)+time.Millisecond, map[string]bool(nil)
		if f.resyncing {
			minIdle, done = r.cfg.ReclaimMinIdle, r.acks.waiting(s.name)
		}
		limit := int64(r.isolateAfter())
		inOrder := limit > 0 && r.order.ordered(s.name)
		ids := make([]string, 0, len(pend))
		for i, p := range pend {
			if done[p.ID] {
				continue
			}
			// A suspect this consumer runs (leased, or just taken over)
			// is not idle: the claim skips it like any other.
			if inOrder && p.RetryCount >= limit && p.Idle >= minIdle {
				if len(ids) == 0 {
					ids, upto, alone = append(ids, p.ID), i+1, true
				} else {
					upto = i
				}
				break
			}
			ids = append(ids, p.ID)
		}
		if len(ids) > 0 {
			isolate := r.isolateAfter()
			if alone {
				isolate = 0                      // its turn: claimed and counted
				r.unqueueSuspect(s.name, ids[0]) // a reclaim pass may have queued it (isolate.go): it runs here
			}
			claimed, err = r.consumer.Claim(rctx, s.name, ids, minIdle, isolate)
		}
	}
	if err != nil {
		f.armResync(err)
		f.handle(ctx, nil, err, n, n)
		return
	}
	f.ok()
	if len(pend) == 0 {
		f.cursor, f.resyncing = ">", false
		r.release(n)
		return
	}
	f.cursor = pend[upto-1].ID
	if len(claimed.Entries)+len(claimed.Isolated) > 0 {
		r.logger.Info("resuming own pending entries", "stream", s.name, "count", len(claimed.Entries), "suspects", len(claimed.Isolated))
	}
	r.metrics.Reclaim.Trimmed(r.logger, s.name, claimed.Deleted, false)
	if len(claimed.Isolated) > 0 {
		r.isolate(s.name, claimed.Isolated)
	}
	batch := r.claimedMessages(ctx, s.name, claimed.Entries)
	f.sizes.observe(batchBytes(batch), len(batch))
	if !alone {
		f.slots.Add(float64(r.dispatch(ctx, batch, n)))
		return
	}
	// Beating the partition's liveness: the fetch loop waits here, up to a
	// handler timeout and more.
	if r.runAlone(ctx, s.name, batch, n, s.beat) {
		f.slots.Add(1)
	}
}

// readBudget is about how many bytes one read may bring: reads ask for
// fewer entries when recent entries were large (readSizer).
func (r *engine) readBudget() int { return max(minReadBudget, r.cfg.MaxMessageBytes) }

// minReadBudget is the read budget unless one entry may be larger.
const minReadBudget = 4 << 20

// readSizer bounds a read in bytes as well as in entries. Redis has no
// byte limit on XREADGROUP, so it estimates the bytes of an entry from
// recent reads — at once up to a read whose entries were larger on average,
// and down by a quarter of the difference per read after — and a read asks
// for as many entries as the budget holds at that size, at least one.
//
// The memory of one stream's reads is thus about the budget: a read's
// messages stay alive together until the last of them is done, and each
// read's entries are held once (Message.Data is the reply's own bytes).
// A stream's first read asks for firstReadCount entries: sized at
// FetchCount, it brought 16 MiB of 64 KiB entries at once, which then set
// the garbage collector's goal for the run. What it cannot bound is the
// first read after entries grow: that one
// brings as many as it asked for, whatever their size; entries over
// WORKER_MAX_MESSAGE_BYTES are then dead-lettered unrun and let go. Across
// reads, at most WORKER_CONCURRENCY messages are held (one per handler
// slot), each at most WORKER_MAX_MESSAGE_BYTES once it runs.
type readSizer struct {
	perEntry int // bytes of an entry's field names and values
	framing  int // bytes of an entry's RESP framing in a raw reply (its ID, headers and lengths); 0: not known yet
}

// firstReadCount is the most entries a stream's first read asks for.
const firstReadCount = 32

// observe takes a read of so many bytes and entries into the estimate.
func (z *readSizer) observe(bytes, entries int) {
	if z == nil || entries == 0 {
		return
	}
	z.perEntry = estimate(z.perEntry, bytes/entries)
}

// estimate is an estimate est moved toward a new average avg: up to it at
// once, down by a quarter of the difference.
func estimate(est, avg int) int {
	if avg >= est {
		return avg
	}
	return est - (est-avg+3)/4
}

func batchBytes(batch []*Message) int {
	n := 0
	for _, m := range batch {
		n += m.size
	}
	return n
}

// reply is about the bytes of a raw reply of n entries of stream, for its
// buffer (xread.go): the stream's header, and each entry's field bytes and
// RESP framing. The framing is learned from the replies (observeReply): an
// ID and a header and length per field, about 60 bytes for an entry of two
// fields and 12 more for each further field (a partition key, an
// idempotency key, a trace context), which a fixed guess of 64 missed,
// doubling the buffer of every read of such entries. A sixteenth more
// leaves room for entries a little larger than those before (IDs whose
// sequence number has more digits, a longer key): a buffer that falls
// short by a byte is doubled.
func (z *readSizer) reply(stream string, n int) int {
	framing := z.framing
	if framing == 0 {
		framing = defaultFraming
	}
	entries := n * (z.perEntry + framing)
	return replyHead(stream) + entries + entries/16
}

// defaultFraming is an entry's framing in a reply before any is known.
const defaultFraming = 64

// replyHead is about the bytes of a raw reply's header: the stream's name
// and the counts before and after it.
func replyHead(stream string) int { return len(stream) + 32 }

// observeReply takes a raw reply of raw bytes, with the entries ms, into
// the framing's estimate.
func (z *readSizer) observeReply(stream string, raw int, ms []*Message) {
	if len(ms) == 0 {
		return
	}
	framing := (raw - replyHead(stream) - batchBytes(ms) + len(ms) - 1) / len(ms)
	z.framing = max(1, estimate(z.framing, framing))
}

// count is how many of n entries one read may ask for: at first, before
// any entry's size is known, firstReadCount.
func (z *readSizer) count(n, budget int) int {
	if z.perEntry <= 0 {
		return min(n, firstReadCount)
	}
	return max(1, min(n, budget/z.perEntry))
}

// acquire waits for at least one free handler slot and takes up to
// FetchCount of those free. With backlog set (the last read was full), it
// first waits a moment for half a read's worth, so that a busy stream is read
// in large batches rather than a few entries per round trip. It returns 0
// when ctx ends first.
func (r *engine) acquire(ctx context.Context, beat *beat, backlog bool) int {
	return r.acquireUpTo(ctx, beat.beat, backlog, r.cfg.FetchCount)
}

// acquireUpTo is acquire taking up to most slots (fewer than FetchCount
// while entries are large).
func (r *engine) acquireUpTo(ctx context.Context, tick func(), backlog bool, most int) int {
	return r.acquireFor(ctx, nil, tick, backlog, most)
}

// acquireFor is acquireUpTo for a fetcher of class c (priority.go; nil
// without priorities).
func (r *engine) acquireFor(ctx context.Context, c *slotClass, tick func(), backlog bool, most int) int {
	if backlog {
		low := max(1, min(most, r.cfg.Concurrency)/2)
		if n := r.sem.acquireFor(ctx, c, low, most, 2*time.Millisecond, tick); n > 0 || ctx.Err() != nil {
			return n
		}
	}
	return r.sem.acquireFor(ctx, c, 1, most, 0, tick)
}

func (r *engine) release(n int) { r.sem.release(n) }

// ensureGroup creates the group, and the stream with it, unless it exists;
// an existing group is fine. It looks first (XINFO GROUPS, a read) and
// creates only a missing group: Redis refuses XGROUP CREATE while it is out
// of memory even when the group exists, and a worker started then must
// still start.
func ensureGroup(ctx context.Context, c redis.UniversalClient, stream, group, start string) error {
	if groups, err := c.XInfoGroups(ctx, stream).Result(); err == nil {
		for _, g := range groups {
			if g.Name == group {
				return nil
			}
		}
	}
	err := c.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return err
	}
	return nil
}

func isNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// checkEviction warns loudly when the stream Redis may evict keys: an evicted
// stream or pending list is lost work.
func checkEviction(ctx context.Context, c redis.UniversalClient, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		log.Info("could not read maxmemory-policy; make sure the stream Redis uses noeviction", "error", err)
		return
	}
	switch p := res["maxmemory-policy"]; {
	case p == "" || p == "noeviction":
	case strings.HasPrefix(p, "allkeys"):
		log.Error("REDIS MAY EVICT STREAMS: maxmemory-policy is "+p+"; under memory pressure Redis deletes streams and pending entries and messages are lost. Set maxmemory-policy noeviction on the stream Redis.",
			"maxmemory_policy", p)
	default:
		log.Warn("maxmemory-policy is "+p+": keys with a TTL (dedupe marks) may be evicted under memory pressure. Prefer noeviction for the stream Redis.",
			"maxmemory_policy", p)
	}
}

// retryWait is the pause after the n-th consecutive Redis failure: 100ms
// doubling to 5s, with jitter, so an outage is neither a hot loop nor slow to
// recover from.
func retryWait(n int) time.Duration { return backoff(n, 100*time.Millisecond, 5*time.Second) }

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
