package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// The dispatch path: what every way a message arrives enters — a fetcher's
// read, its replay of own pending entries, a reclaim pass, a suspect's turn
// and a partition's take-over — on handler slots reserved beforehand.

// sink is the runtime as reclaim sees it: claimed entries enter the same
// dispatch path as fetched ones and take handler slots the same way.
type sink struct{ r *engine }

// Reserve waits up to a second for a first free slot (waiters are served in
// order, so a busy fetcher cannot starve the reclaimer), then takes up to n of
// those free.
func (s sink) Reserve(ctx context.Context, n int) int {
	return s.r.sem.acquire(ctx, 1, n, time.Second, nil)
}

func (s sink) Release(n int) { s.r.release(n) }

func (s sink) Deliver(ctx context.Context, stream string, entries []reclaim.Entry, reserved int) {
	entries = s.r.notAckWaiting(stream, entries) // acks.go
	s.r.dispatch(ctx, s.r.claimedMessages(ctx, stream, entries), reserved)
}

func (s sink) Isolate(stream string, ids []string) { s.r.isolate(stream, ids) }

// dispatch hands messages to the handler pool on the n slots reserved for
// them, releases the slots it does not use and returns how many it handed
// over.
func (r *engine) dispatch(ctx context.Context, batch []*Message, n int) int {
	run, handed := r.admit(ctx, batch, n)
	r.jobs.push(run...)
	return handed
}

// admit takes messages in on the n slots reserved for them: it drops those
// not to run, releases their slots and returns those to run now and how
// many it took in (those behind their key's running message wait in the
// order gate, each on its slot).
func (r *engine) admit(ctx context.Context, batch []*Message, n int) (run []*Message, handed int) {
	batch = r.confirmLate(batch)
	batch = r.dropCancelled(ctx, batch) // cancel.go
	batch = r.dropTooLarge(ctx, batch)
	if r.cfg.DedupeWindow > 0 {
		batch = r.dropDuplicates(ctx, batch)
	}
	run = batch
	if r.order != nil {
		run = r.order.admit(batch) // ordered.go: a message whose key runs waits behind it, on its slot
	}
	r.release(n - len(batch))
	return run, len(batch)
}

// confirmLate renews the lease of messages whose read (or claim) took a
// lease period or more to answer, before they run, and drops those this
// consumer no longer owns. An entry's idle time runs from its delivery, not
// from when the reply arrives: a reply held up by a slow network may bring
// entries that other consumers have claimed meanwhile and are running.
// Normally replies take far less than a lease period and nothing is sent.
// When the renewal fails, the late messages are not run: they stay pending,
// and a reclaim pass finds them again.
func (r *engine) confirmLate(batch []*Message) []*Message {
	if len(batch) == 0 {
		return batch
	}
	stream, readAt, n := batch[0].Stream, batch[0].readAt, len(batch) // before confirm filters batch in place
	out, err := r.confirm(batch)
	if err != nil {
		r.logger.Warn("entries waited a lease period before running (a read that answered late, or read ahead behind slow handlers) and could not be confirmed as ours; they stay pending for a reclaim pass",
			"stream", stream, "count", n-len(out), "took", time.Since(readAt).Round(time.Millisecond), "error", err)
	}
	return out
}

// confirm is confirmLate without its log line when Redis did not answer:
// it returns that error, the late messages left out. It filters batch in
// place.
func (r *engine) confirm(batch []*Message) ([]*Message, error) {
	now := time.Now()
	var late []string
	for _, m := range batch {
		if now.Sub(m.readAt) >= r.leaseEvery() {
			late = append(late, m.ID)
		}
	}
	if len(late) == 0 {
		return batch, nil
	}
	stream := batch[0].Stream
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	leased, err := r.consumer.Lease(ctx, stream, late)
	r.metrics.Reclaim.Trimmed(r.logger, stream, leased.Trimmed, false)
	if taken := append(leased.Lost, leased.Gone...); len(taken) > 0 {
		r.logger.Warn("entries waited a lease period before running (a read that answered late, or read ahead behind slow handlers) and other consumers have taken them over meanwhile; skipped them",
			"stream", stream, "count", len(taken), "ids", strings.Join(taken, ","))
	}
	drop := func(m *Message) bool { return err != nil || leased.State(m.ID) != reclaim.Renewed }
	out := batch[:0]
	for _, m := range batch {
		switch late := now.Sub(m.readAt) >= r.leaseEvery(); {
		case late && drop(m):
		case late:
			m.readAt = now // renewed by the call sent now
			out = append(out, m)
		default:
			out = append(out, m)
		}
	}
	return out, err
}

// confirmOne is confirmLate for a message about to run. A keyed message of
// an ordered partition is not left out when Redis does not answer: its
// key's later messages wait behind it, and would run first while it waited
// for a reclaim pass (orderGate.confirmLate tries again).
func (r *engine) confirmOne(m *Message) bool {
	if partitionKey(m) == "" || !r.order.ordered(m.Stream) {
		return len(r.confirmLate([]*Message{m})) == 1
	}
	failed := false
	return r.order.confirmLate(m, func() (bool, error) {
		out, err := r.confirm([]*Message{m})
		switch {
		case err != nil && !failed:
			failed = true
			r.logger.Warn("a message that waited a lease period behind its key could not be confirmed as ours; trying again, the key's later messages waiting behind it",
				"stream", m.Stream, "id", m.ID, "error", err)
		case err == nil && failed:
			r.logger.Info("the confirmation of a message that waited behind its key was answered", "stream", m.Stream, "id", m.ID, "ours", len(out) == 1)
		}
		return len(out) == 1, err
	})
}

// claimedMessages builds the messages of claimed entries, setting Attempt
// from their delivery counts: each earlier delivery was an attempt that did
// not finish, most likely because it crashed the process. An entry past the
// attempt limit goes to the dead-letter stream instead of running again, so a
// message that kills every worker that touches it cannot crash-loop one. An
// entry that failed here and whose retry or dead letter is still being
// written is left out: it ran already.
func (r *engine) claimedMessages(ctx context.Context, stream string, entries []reclaim.Entry) []*Message {
	entries = r.notSettleWaiting(stream, entries) // settlebatch.go
	out := make([]*Message, 0, len(entries))
	for _, e := range entries {
		m := newMessage(stream, e.XMessage)
		m.readAt = e.ClaimedAt
		m.Deliveries = max(e.Deliveries, 1)
		// This claim is one delivery; every earlier one was an attempt. The
		// count is Redis's, bounded like the attempt field, so no forged
		// field can wrap the sum below the limit.
		unfinished := max(0, min(e.Deliveries-1, maxAttempt))
		m.Attempt = min(m.Attempt+int(unfinished), maxAttempt)
		if m.Attempt <= r.cfg.MaxAttempts {
			out = append(out, m)
			continue
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		cause := fmt.Errorf("abandoned: delivered %d times without finishing (the consumers handling it crashed or were killed)", unfinished)
		err := r.deadLetter(dctx, m, cause)
		cancel()
		if err != nil {
			r.logger.Error("could not dead-letter an abandoned message; it stays pending", "stream", stream, "id", m.ID, "error", err)
			r.count(m, OutcomeUnrecorded)
			continue
		}
		r.logger.Warn("message dead-lettered: it never finished in its attempts", "stream", stream, "id", m.ID, "type", shownType(m.Type), "deliveries", unfinished)
		r.count(m, OutcomeDead)
		r.metrics.Reclaim.Abandoned.WithLabelValues(stream).Inc()
	}
	return out
}

// dropTooLarge dead-letters, without running them, the messages larger
// than WORKER_MAX_MESSAGE_BYTES, and returns the others.
func (r *engine) dropTooLarge(ctx context.Context, batch []*Message) []*Message {
	limit := r.cfg.MaxMessageBytes
	i := 0
	for i < len(batch) && (limit <= 0 || batch[i].size <= limit) {
		i++
	}
	if i == len(batch) {
		return batch
	}
	out := batch[:i]
	for _, m := range batch[i:] {
		if m.size <= limit {
			out = append(out, m)
			continue
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		cause := fmt.Errorf("%w: its fields take %d bytes, more than WORKER_MAX_MESSAGE_BYTES (%d)", ErrTooLarge, m.size, limit)
		err := r.deadLetter(dctx, m, cause)
		cancel()
		if err != nil {
			r.logger.Error("could not dead-letter a message too large to run; it stays pending", "stream", m.Stream, "id", m.ID, "error", err)
			r.count(m, OutcomeUnrecorded)
			continue
		}
		r.logger.Warn("message dead-lettered unrun: too large", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type),
			"bytes", m.size, "max_bytes", limit)
		r.count(m, OutcomeDead)
	}
	return out
}

// dropDuplicates acknowledges, without running them, messages whose
// idempotency key was processed inside the dedupe window, checking the whole
// batch in one round trip. On a Redis error every message runs (at-least-once
// wins over skipping).
func (r *engine) dropDuplicates(ctx context.Context, batch []*Message) []*Message {
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
	cmds := make([]*redis.StringCmd, len(keyed))
	for i, m := range keyed {
		cmds[i] = pipe.Get(context.WithoutCancel(ctx), wire.DedupeKey(m.Stream, m.IdempotencyKey))
	}
	// Exec reports the first command's error: a miss (redis.Nil) or a key of
	// another type is read per command below; anything else (the connection,
	// a refused handshake, which leaves the commands without an error of
	// their own) runs the batch.
	if _, err := pipe.Exec(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		r.logger.Warn("dedupe check failed; running the batch", "error", err)
		return batch
	}
	seen := make(map[*Message]bool, len(keyed))
	for i, m := range keyed {
		v, err := cmds[i].Result()
		switch {
		case err == nil && v == wire.DedupeMark:
			seen[m] = true
		case errors.Is(err, redis.Nil):
		case err == nil || redis.HasErrorPrefix(err, "WRONGTYPE"):
			// Not the runtime's mark (wire.DedupeMark): the message runs,
			// and its mark then replaces the key.
			r.logger.Warn("a key the runtime did not write sits at a dedupe mark; the message runs", "key", strconv.Quote(cmds[i].Args()[1].(string)), "stream", m.Stream, "id", m.ID)
		default:
			r.logger.Warn("dedupe check failed; running the batch", "error", err)
			return batch
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
