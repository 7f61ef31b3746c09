package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// fetchLoop reads one stream for this consumer: first its own pending entries
// (left by an earlier run of the same consumer), then new ones. A read never
// asks for more entries than there are free handler slots, so nothing waits
// in a local buffer while its idle time grows unseen.
func (r *Runtime) fetchLoop(ctx context.Context, s *streamState) {
	log := r.logger.With("stream", s.name)
	// Reads are not cancelled mid-flight: entries a cancelled read was given
	// would sit in our pending list unseen. BLOCK is finite, so the loop
	// notices ctx within one block period.
	rctx := context.WithoutCancel(ctx)
	start := "0"
	if r.cfg.GroupStart == "latest" {
		start = "$"
	}
	cursor := "0" // our own pending entries first
	idle := true  // the last read drained the stream
	var failures int
	fail := func(what string, err error) {
		failures++
		s.redisOK.Store(false)
		wait := retryWait(failures)
		log.Error(what, "error", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
		sleepCtx(ctx, wait)
	}
	ok := func() {
		if failures > 0 {
			log.Info("redis reachable again", "after_failures", failures)
		}
		failures = 0
		s.redisOK.Store(true)
	}
	for ctx.Err() == nil {
		s.beat.Beat()
		if !s.groupReady.Load() {
			if err := ensureGroup(rctx, r.client, s.name, r.cfg.Group, start); err != nil {
				fail("creating consumer group", err)
				continue
			}
			s.groupReady.Store(true)
			start = "0" // a group recreated after its stream was deleted reads all of it
			ok()
		}
		n := r.acquire(ctx, s.beat, !idle && cursor == ">")
		if n == 0 {
			return
		}
		if ctx.Err() != nil { // select picked a freed slot over a shutdown that came first
			r.release(n)
			return
		}
		args := &redis.XReadGroupArgs{
			Group: r.cfg.Group, Consumer: r.cfg.Consumer,
			Streams: []string{s.name, cursor}, Count: int64(n), Block: -1,
		}
		if cursor == ">" {
			if idle {
				// Take what is there with every free slot; when nothing is,
				// wait for the next entry holding one slot, not all of them,
				// so that the reclaimer and other streams can use the rest.
				msgs, err := r.read(rctx, args, -1)
				if err != nil || len(msgs) > 0 {
					idle = len(msgs) < n
					r.handle(ctx, s, msgs, err, n, fail, ok, &cursor)
					continue
				}
				r.release(n - 1)
				n, args.Count = 1, 1
			}
			msgs, err := r.read(rctx, args, r.cfg.Block)
			idle = n == 1 || len(msgs) < n
			r.handle(ctx, s, msgs, err, n, fail, ok, &cursor)
			continue
		}
		msgs, err := r.read(rctx, args, -1)
		r.handle(ctx, s, msgs, err, n, fail, ok, &cursor)
	}
}

func (r *Runtime) read(ctx context.Context, args *redis.XReadGroupArgs, block time.Duration) ([]redis.XMessage, error) {
	a := *args
	a.Block = block
	res, err := r.client.XReadGroup(ctx, &a).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0].Messages, nil
}

// handle dispatches one read's messages on the n slots reserved for it and
// releases the slots it did not use.
func (r *Runtime) handle(ctx context.Context, s *streamState, msgs []redis.XMessage, err error,
	n int, fail func(string, error), ok func(), cursor *string,
) {
	if err != nil {
		r.release(n)
		if isNoGroup(err) {
			s.groupReady.Store(false)
			r.logger.Warn("stream or group is gone; recreating it", "stream", s.name, "group", r.cfg.Group, "error", err)
			return
		}
		fail("reading stream", err)
		return
	}
	ok()
	history := *cursor != ">"
	if history {
		if len(msgs) == 0 {
			*cursor = ">"
		} else {
			*cursor = msgs[len(msgs)-1].ID
			r.logger.Info("resuming own pending entries", "stream", s.name, "count", len(msgs))
		}
	}
	r.dispatch(ctx, s.name, msgs, n, history)
}

// dispatch hands entries to the handler pool on the n slots reserved for
// them and releases the slots it does not use. Entries delivered before
// (our own pending ones, or claimed from others) get their attempt from
// their delivery count first.
func (r *Runtime) dispatch(ctx context.Context, stream string, msgs []redis.XMessage, n int, redelivered bool) {
	batch := make([]*Message, 0, len(msgs))
	var deleted []string
	for _, e := range msgs {
		if e.Values == nil {
			// A pending entry trimmed from the stream: nothing to run.
			deleted = append(deleted, e.ID)
			continue
		}
		batch = append(batch, newMessage(stream, e))
	}
	if len(deleted) > 0 {
		r.dropDeleted(ctx, stream, deleted)
	}
	if redelivered {
		batch = r.countDeliveries(ctx, stream, batch)
	}
	if r.cfg.DedupeWindow > 0 {
		batch = r.dropDuplicates(ctx, batch)
	}
	for _, m := range batch {
		r.jobs <- m
	}
	r.release(n - len(batch))
}

// dropDeleted acknowledges pending IDs whose entries are gone. It counts
// only the IDs its XACK removed: a reclaim pass may have removed (and
// counted) them first.
func (r *Runtime) dropDeleted(ctx context.Context, stream string, ids []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	n, err := r.client.XAck(ctx, stream, r.cfg.Group, ids...).Result()
	if err != nil {
		r.logger.Warn("could not acknowledge pending entries trimmed from the stream; a later pass will", "stream", stream, "count", len(ids), "error", err)
		return
	}
	if n > 0 {
		r.metrics.Reclaim.DeletedWhilePending.WithLabelValues(stream).Add(float64(n))
		r.logger.Warn("pending entries were trimmed from the stream before they were processed", "stream", stream, "count", n, "ids", strings.Join(ids, ","))
	}
}

// countDeliveries sets Attempt from the delivery counts of entries read
// again from our pending list: each earlier delivery was an attempt that did
// not finish, most likely because it crashed the process. An entry past the
// attempt limit goes to the dead-letter stream instead of running again, so a
// message that kills every worker that touches it cannot crash-loop one.
func (r *Runtime) countDeliveries(ctx context.Context, stream string, batch []*Message) []*Message {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	pend, err := r.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: r.cfg.Group, Consumer: r.cfg.Consumer,
		// Our pending list between the first and last ID also holds what we
		// are running now, at most one entry per handler slot.
		Start: batch[0].ID, End: batch[len(batch)-1].ID, Count: int64(len(batch) + r.cfg.Concurrency),
	}).Result()
	if err != nil {
		r.logger.Warn("reading delivery counts failed; running pending entries as they are", "stream", stream, "error", err)
		return batch
	}
	deliveries := make(map[string]int64, len(pend))
	for _, p := range pend {
		deliveries[p.ID] = p.RetryCount
	}
	out := batch[:0]
	for _, m := range batch {
		// This read is one delivery; every earlier one was an attempt.
		if d := deliveries[m.ID]; d > 1 {
			m.Attempt += int(d - 1)
		}
		if m.Attempt <= r.cfg.MaxAttempts {
			out = append(out, m)
			continue
		}
		cause := fmt.Errorf("abandoned: delivered %d times without finishing (the consumers handling it crashed or were killed)", m.Attempt-1)
		if err := r.deadLetter(ctx, m, cause); err != nil {
			r.logger.Error("could not dead-letter an abandoned message; it stays pending", "stream", stream, "id", m.ID, "error", err)
			r.count(m, OutcomeUnrecorded)
			continue
		}
		r.logger.Warn("message dead-lettered: it never finished in its attempts", "stream", stream, "id", m.ID, "type", m.Type, "attempts", m.Attempt-1)
		r.count(m, OutcomeDead)
		r.metrics.Reclaim.Abandoned.WithLabelValues(stream).Inc()
	}
	return out
}

// dropDuplicates acknowledges, without running them, messages whose
// idempotency key was processed inside the dedupe window, checking the whole
// batch in one round trip. On a Redis error every message runs (at-least-once
// wins over skipping).
func (r *Runtime) dropDuplicates(ctx context.Context, batch []*Message) []*Message {
	var keyed []*Message
	for _, m := range batch {
		if m.IdempotencyKey != "" {
			keyed = append(keyed, m)
		}
	}
	if len(keyed) == 0 {
		return batch
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(keyed))
	for i, m := range keyed {
		cmds[i] = pipe.Exists(context.WithoutCancel(ctx), dedupeKey(m.Stream, m.IdempotencyKey))
	}
	if _, err := pipe.Exec(context.WithoutCancel(ctx)); err != nil {
		r.logger.Warn("dedupe check failed; running the batch", "error", err)
		return batch
	}
	seen := make(map[*Message]bool, len(keyed))
	for i, m := range keyed {
		if cmds[i].Val() > 0 {
			seen[m] = true
		}
	}
	out := batch[:0]
	for _, m := range batch {
		if seen[m] {
			r.logger.Debug("duplicate skipped", "stream", m.Stream, "id", m.ID, "idempotency_key", m.IdempotencyKey)
			r.ack(ackReq{stream: m.Stream, id: m.ID, typ: m.Type, outcome: OutcomeDuplicate})
			continue
		}
		out = append(out, m)
	}
	return out
}

// acquire waits for one free handler slot and takes up to FetchCount more of
// those free now. With backlog set (the last read was full), it first waits a
// moment for half a read's worth of slots, so that a busy stream is read in
// large batches rather than a few entries per round trip. It returns 0 when
// ctx ends first.
func (r *Runtime) acquire(ctx context.Context, beat *Beat, backlog bool) int {
	t := time.NewTicker(time.Second)
	defer t.Stop()
wait:
	for {
		select {
		case r.slots <- struct{}{}:
			break wait
		case <-t.C:
			beat.Beat() // waiting on busy handlers is alive, not stuck
		case <-ctx.Done():
			return 0
		}
	}
	n := 1
	if backlog {
		low := min(r.cfg.FetchCount, r.cfg.Concurrency) / 2
		gather := time.NewTimer(2 * time.Millisecond)
		defer gather.Stop()
	gathering:
		for n < low {
			select {
			case r.slots <- struct{}{}:
				n++
			case <-gather.C:
				break gathering
			case <-ctx.Done():
				break gathering
			}
		}
	}
	for n < r.cfg.FetchCount {
		select {
		case r.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (r *Runtime) release(n int) {
	for range n {
		<-r.slots
	}
}

// ackLoop writes acknowledgements in batches: it takes what is queued, up to
// a cap, and sends it in one pipeline (dedupe marks first, then one XACK per
// stream with every ID). Under load batches grow by themselves; when idle an
// ack goes out at once.
func (r *Runtime) ackLoop(stop <-chan struct{}) {
	defer close(r.ackerDone)
	const maxBatch = 4096
	batch := make([]ackReq, 0, 256)
	for {
		select {
		case a := <-r.acks:
			batch = append(batch, a)
		case <-stop:
		rest:
			for {
				select {
				case a := <-r.acks:
					batch = append(batch, a)
				default:
					break rest
				}
			}
			if len(batch) > 0 {
				r.flushFinal(batch)
			}
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case a := <-r.acks:
				batch = append(batch, a)
			default:
				break drain
			}
		}
		r.flushRetrying(batch, stop)
		batch = batch[:0]
	}
}

// flushRetrying writes a batch, retrying with backoff while Redis fails,
// until it succeeds or shutdown turns it into a final flush.
func (r *Runtime) flushRetrying(batch []ackReq, stop <-chan struct{}) {
	for failures := 1; ; failures++ {
		err := r.flushAcks(context.Background(), batch)
		if err == nil {
			return
		}
		wait := retryWait(failures)
		r.logger.Error("acknowledging messages failed; retrying", "count", len(batch), "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-stop:
			r.flushFinal(batch)
			return
		case <-time.After(wait):
		}
	}
}

// flushFinal makes a last few attempts at shutdown with fresh contexts.
func (r *Runtime) flushFinal(batch []ackReq) {
	var err error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err = r.flushAcks(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		sleepCtx(context.Background(), retryWait(i+1))
	}
	r.logger.Error("acknowledgements lost at shutdown; those messages stay pending and will be delivered again",
		"count", len(batch), "error", err)
}

func (r *Runtime) flushAcks(ctx context.Context, batch []ackReq) error {
	pipe := r.client.Pipeline()
	ids := make(map[string][]string, len(r.streams))
	for _, a := range batch {
		if a.dedupe != "" {
			pipe.Set(ctx, a.dedupe, "1", r.cfg.DedupeWindow)
		}
		ids[a.stream] = append(ids[a.stream], a.id)
	}
	for s, list := range ids {
		pipe.XAck(ctx, s, r.cfg.Group, list...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for _, a := range batch {
		r.metrics.Messages.WithLabelValues(a.stream, a.typ, a.outcome).Inc()
	}
	return nil
}

// ensureGroup creates the group, and the stream with it; an existing group
// is fine.
func ensureGroup(ctx context.Context, c redis.UniversalClient, stream, group, start string) error {
	err := c.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

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
func retryWait(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
