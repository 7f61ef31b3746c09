// Package reclaim recovers the work consumers leave behind when they die:
// it claims entries idle past a minimum (XAUTOCLAIM) and hands them to the
// runtime's dispatch path, counts entries trimmed from the stream while they
// were pending, keeps live handlers' entries from being claimed (leases), and
// deletes consumers that are gone and own nothing. A live consumer proves it
// is alive with a heartbeat key, because XINFO CONSUMERS idle time cannot
// tell a dead consumer from one blocked on an empty stream.
package reclaim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/wire"
)

// Options configure a Reclaimer. Every field but Owned is required; config.Config
// holds the defaults.
type Options struct {
	Streams  []string
	Group    string
	Consumer string
	// MinIdle is how long an entry must sit unacknowledged before it is
	// claimed.
	MinIdle time.Duration
	// Interval is the pause between passes.
	Interval time.Duration
	// Count is the most entries one XAUTOCLAIM asks for.
	Count int
	// GoneAfter is how long a consumer must have sent no heartbeat before
	// it is deleted (when it owns nothing).
	GoneAfter time.Duration
	// IsolateAfter is how many deliveries that never finished make a
	// claimed entry a suspect: it is handed to Sink.Isolate, uncounted,
	// instead of being delivered in a batch. 0 isolates nothing.
	IsolateAfter int
	// Owned, when not nil, narrows each claim pass to the streams it
	// returns then, a subset of Streams: the partitions of a partitioned
	// stream this consumer owns, so that entries of a partition a live
	// worker reads are never claimed out of their order. Heartbeats and
	// consumer clean-up still cover every stream. Default: nil (all of
	// Streams)
	Owned func() []string
}

// Sink is the runtime's dispatch path, which claimed entries enter exactly
// as fresh ones do.
type Sink interface {
	// Reserve takes up to n free handler slots, waiting a bounded time
	// for the first, and returns how many it took (0: none came free).
	Reserve(ctx context.Context, n int) int
	// Deliver dispatches claimed entries on slots reserved for them, one
	// each, and releases the reserved slots it did not use.
	Deliver(ctx context.Context, stream string, entries []Entry, reserved int)
	// Isolate takes suspects: entries of this consumer, claimed but not yet
	// counted as delivered, that must run one at a time, each claimed with
	// Claim when its turn comes.
	Isolate(stream string, ids []string)
	// Release returns reserved slots unused.
	Release(n int)
}

// Entry is a claimed stream entry and its delivery count, this delivery
// included.
type Entry struct {
	redis.XMessage
	Deliveries int64
	// ClaimedAt is when the claim was sent: the entry has been idle since
	// then at most.
	ClaimedAt time.Time
}

// Metrics count what the reclaimer did.
type Metrics struct {
	Reclaimed           *prometheus.CounterVec
	DeletedWhilePending *prometheus.CounterVec
	ConsumersRemoved    *prometheus.CounterVec
	// Abandoned counts entries dead-lettered because they were delivered
	// too often without finishing; the runtime's dispatch path increments
	// it.
	Abandoned *prometheus.CounterVec
	// Failures counts passes (claiming idle entries, or cleaning up gone
	// consumers) that failed on a stream; the other streams' go on.
	Failures *prometheus.CounterVec
	// RedisErrors, when not nil, is counted with Failures: the runtime's
	// count of failed Redis calls for reclaiming (not registered here).
	RedisErrors prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_reclaimed_total",
			Help: "Entries claimed from consumers that left them idle past the reclaim min-idle.",
		}, []string{"stream"}),
		DeletedWhilePending: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_deleted_while_pending_total",
			Help: "Pending entries found trimmed from the stream; their IDs left the pending list.",
		}, []string{"stream"}),
		ConsumersRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_consumers_removed_total",
			Help: "Consumers deleted from the group: gone past the age limit and owning nothing.",
		}, []string{"stream"}),
		Abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_abandoned_total",
			Help: "Entries dead-lettered because they reached the attempt limit in deliveries that never finished (crashed consumers).",
		}, []string{"stream"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_reclaim_failures_total",
			Help: "Reclaim passes (claiming idle entries, or cleaning up gone consumers) that failed on a stream; the other streams' go on.",
		}, []string{"stream"}),
	}
	reg.MustRegister(m.Reclaimed, m.DeletedWhilePending, m.ConsumersRemoved, m.Abandoned, m.Failures)
	return m
}

// Trimmed counts and logs pending IDs whose entries were found trimmed from
// the stream; the command that found them (XAUTOCLAIM, XCLAIM, Claim or
// Lease) has already dropped them from the pending list. running says their
// handlers run now: they go on, but a failure can no longer be retried.
func (m *Metrics) Trimmed(logger *slog.Logger, stream string, ids []string, running bool) {
	if len(ids) == 0 {
		return
	}
	m.DeletedWhilePending.WithLabelValues(stream).Add(float64(len(ids)))
	msg := "pending entries were trimmed from the stream before they were processed"
	if running {
		msg = "running messages were trimmed from the stream; their handlers go on, but a failure can no longer be retried"
	}
	logger.Warn(msg, "stream", stream, "count", len(ids), "ids", strings.Join(ids, ","))
}

// Reclaimer runs the claim, heartbeat and clean-up passes of one consumer.
type Reclaimer struct {
	client  redis.UniversalClient
	opts    Options
	sink    Sink
	logger  *slog.Logger
	metrics *Metrics
	beat    func()
}

// New returns a Reclaimer. beat, when not nil, is called on every pass (for
// liveness probes).
func New(client redis.UniversalClient, opts Options, sink Sink, logger *slog.Logger, metrics *Metrics, beat func()) *Reclaimer {
	if beat == nil {
		beat = func() {}
	}
	return &Reclaimer{client: client, opts: opts, sink: sink, logger: logger.With("component", "reclaim"), metrics: metrics, beat: beat}
}

func (r *Reclaimer) consumer() Consumer {
	return Consumer{Client: r.client, Group: r.opts.Group, Name: r.opts.Consumer}
}

// Result is what one claim pass did.
type Result struct {
	Claimed int // entries claimed and delivered
	Deleted int // pending IDs whose entries were trimmed away
}

// Run sends a heartbeat and claims idle entries every interval, and cleans
// up gone consumers every tenth pass, until ctx ends. A stream whose pass
// fails (not a stream, say) is logged when its failure starts and when it
// ends, and the other streams go on.
func (r *Reclaimer) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	var failing bool                 // the heartbeat, which every stream needs
	streams := map[streamPass]bool{} // streams whose passes fail
	for pass := 0; ; pass++ {
		r.beat()
		err := r.heartbeat(ctx)
		// A heartbeat Redis refuses for want of memory (maxmemory under
		// noeviction) does not stop the claims: claiming writes nothing
		// new, and the entries of dead consumers must still run.
		if err == nil || redis.HasErrorPrefix(err, "OOM") {
			res, serr := r.runOnce(ctx)
			r.noteStreams(streams, opClaim, serr)
			if res.Claimed > 0 || res.Deleted > 0 {
				r.logger.Info("reclaimed idle entries", "claimed", res.Claimed, "deleted_while_pending", res.Deleted)
			}
		}
		if err == nil && pass%10 == 0 {
			removed, serr := r.cleanOnce(ctx)
			r.noteStreams(streams, opClean, serr)
			if removed > 0 {
				r.logger.Info("removed gone consumers", "count", removed)
			}
		}
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				r.logger.Error("reclaim pass failed; will retry", "error", err)
			}
			failing = true
		case err == nil && failing:
			r.logger.Info("reclaim passes work again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// What a pass does on a stream, as its failures are logged.
const (
	opClaim = "claiming idle entries"
	opClean = "cleaning up gone consumers"
)

type streamPass struct{ op, stream string }

// streamErrors are the streams that failed in one pass, each on its own:
// the pass went on with the others.
type streamErrors []streamError

type streamError struct {
	streamPass
	err error
}

func (e streamErrors) Error() string {
	msgs := make([]string, len(e))
	for i, se := range e {
		msgs[i] = se.op + " on stream " + se.stream + ": " + se.err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e streamErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, se := range e {
		out[i] = se.err
	}
	return out
}

// failed records that stream failed in op, unless ctx ended (shutdown is
// not a failure), and counts it.
func (r *Reclaimer) failed(ctx context.Context, errs *streamErrors, op, stream string, err error) {
	if ctx.Err() != nil {
		return
	}
	r.metrics.Failures.WithLabelValues(stream).Inc()
	if r.metrics.RedisErrors != nil {
		r.metrics.RedisErrors.Inc()
	}
	*errs = append(*errs, streamError{streamPass{op, stream}, err})
}

// orNil keeps an empty streamErrors from becoming a non-nil error.
func (e streamErrors) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// noteStreams logs the streams whose op failed in this pass and had not
// failed before, and those whose op failed before and did not now.
func (r *Reclaimer) noteStreams(failing map[streamPass]bool, op string, err error) {
	var now streamErrors
	errors.As(err, &now)
	seen := make(map[streamPass]bool, len(now))
	for _, e := range now {
		seen[e.streamPass] = true
		if !failing[e.streamPass] {
			r.logger.Error(op+" failed on a stream; the other streams go on", "stream", e.stream, "error", e.err)
		}
		failing[e.streamPass] = true
	}
	for k := range failing {
		if k.op == op && !seen[k] {
			r.logger.Info(op+" works again on a stream", "stream", k.stream)
			delete(failing, k)
		}
	}
}

// runOnce claims, per stream, entries idle past MinIdle, scanning the
// pending list from the start until the cursor wraps. It never claims more
// than the free handler slots: when none are free the rest waits for a later
// pass (or another consumer). A stream that fails is counted and returned in
// the error, a streamErrors, and the others go on.
//
// XAUTOCLAIM takes the entries with JUSTID, which does not count a
// delivery; Claim then counts one for each entry that runs now and leaves
// the suspects (entries already delivered IsolateAfter times without
// finishing) uncounted until their turn, one at a time. A poison message
// that kills every process it runs in is thus charged its crashes alone,
// and the entries claimed beside it are not dead-lettered with it.
func (r *Reclaimer) runOnce(ctx context.Context) (Result, error) {
	var res Result
	var errs streamErrors
	streams := r.opts.Streams
	if r.opts.Owned != nil {
		streams = r.opts.Owned()
	}
	for _, s := range streams {
		if err := r.claimStream(ctx, s, &res); err != nil {
			r.failed(ctx, &errs, opClaim, s, err)
		}
	}
	return res, errs.orNil()
}

// claimStream is runOnce on one stream. A stream or group that does not
// exist is not an error: the fetcher (re)creates it.
func (r *Reclaimer) claimStream(ctx context.Context, s string, res *Result) error {
	start := "0-0"
	for {
		n := r.sink.Reserve(ctx, r.opts.Count)
		if n == 0 {
			return nil
		}
		ids, next, deleted, err := r.autoclaim(ctx, s, start, n)
		var claimed Claimed
		if err == nil && len(ids) > 0 {
			claimed, err = r.consumer().Claim(ctx, s, ids, 0, r.opts.IsolateAfter)
		}
		if err != nil {
			r.sink.Release(n)
			if redis.HasErrorPrefix(err, "NOGROUP") {
				return nil
			}
			return err
		}
		deleted = append(deleted, claimed.Deleted...)
		res.Deleted += len(deleted)
		r.metrics.Trimmed(r.logger, s, deleted, false)
		res.Claimed += len(claimed.Entries) + len(claimed.Isolated)
		r.metrics.Reclaimed.WithLabelValues(s).Add(float64(len(claimed.Entries) + len(claimed.Isolated)))
		if len(claimed.Isolated) > 0 {
			r.sink.Isolate(s, claimed.Isolated)
		}
		r.sink.Deliver(ctx, s, claimed.Entries, n)
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
}

// autoclaim runs XAUTOCLAIM … JUSTID: it takes up to count entries idle past
// MinIdle without counting a delivery, and returns their IDs, the cursor and
// the IDs Redis found trimmed from the stream (and dropped from the pending
// list). It is sent once (sendonce): resent after a reply that was lost, it
// would skip the entries the first one took, no longer idle, and take later
// ones; those it took would then wait another min-idle unseen, to run after
// entries added after them.
func (r *Reclaimer) autoclaim(ctx context.Context, stream, start string, count int) (ids []string, next string, deleted []string, err error) {
	cmd := redis.NewCmd(ctx, []any{"XAUTOCLAIM", stream, r.opts.Group, r.opts.Consumer,
		r.opts.MinIdle.Milliseconds(), start, "COUNT", count, "JUSTID"}...)
	_ = sendonce.Process(ctx, r.client, cmd)
	res, err := cmd.Slice()
	if err != nil {
		return nil, "", nil, err
	}
	if len(res) < 2 {
		return nil, "", nil, fmt.Errorf("XAUTOCLAIM: unexpected reply %v", res)
	}
	next, _ = res[0].(string)
	ids = replyStrings(res[1])
	if len(res) > 2 { // Redis 7: the IDs trimmed away while pending
		deleted = replyStrings(res[2])
	}
	return ids, next, deleted, nil
}

// Consumer is one consumer of a group, as the claims and leases of its own
// pending entries see it. The same group and consumer name serve every
// stream (and partition) it reads.
type Consumer struct {
	Client redis.UniversalClient
	Group  string
	Name   string
}

// Claimed is what Claim did with the entries it was given.
type Claimed struct {
	Entries  []Entry  // counted as delivered to this consumer now: run them
	Isolated []string // suspects, left uncounted: run one at a time, each claimed on its turn
	Deleted  []string // trimmed from the stream while pending; now out of the pending list
}

// claimScript takes pending entries of this consumer as a new delivery
// (XCLAIM, which counts one and returns the entry) — except those that were
// delivered isolateAfter times or more without finishing: they are left as
// they are, uncounted, for the caller to run one at a time. Counting a
// delivery only when the entry is about to run keeps a crash from being
// charged to entries that were merely read beside the one that caused it.
// Entries idle less than min-idle (just taken by another path of this
// consumer), owned by another consumer or no longer pending are skipped; one
// trimmed from the stream is dropped from the pending list by XCLAIM and
// reported.
//
// KEYS[1] -> the stream
// ARGV[1] -> group
// ARGV[2] -> this consumer
// ARGV[3] -> min-idle, ms
// ARGV[4] -> isolateAfter: earlier deliveries from which an entry is only
// reported (0: claim every entry)
// ARGV[5..] -> entry IDs
// Returns {entries, delivery counts (this delivery included), isolated IDs,
// deleted IDs}.
var claimScript = redis.NewScript(`
local entries, counts, isolated, deleted = {}, {}, {}, {}
local minIdle, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] and p[1][3] >= minIdle then
    if limit > 0 and p[1][4] >= limit then
      isolated[#isolated + 1] = ARGV[i]
    else
      local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])
      if #r == 0 or not r[1] then
        deleted[#deleted + 1] = ARGV[i]
      else
        entries[#entries + 1] = r[1]
        counts[#counts + 1] = p[1][4] + 1
      end
    end
  end
end
return {entries, counts, isolated, deleted}
`)

// Claim takes entries of this consumer's pending list as a delivery, which
// counts one, and returns them with their delivery counts — but leaves the
// entries delivered isolateAfter times or more without finishing as they
// are (0: none), returning only their IDs. Entries idle less than minIdle,
// owned by another consumer or no longer pending are skipped.
//
// The claim is sent once (sendonce): resent after a reply that was lost, a
// claim with a min-idle would skip the entries the first one took, their
// idle time reset. On an error that may have reached Redis (not
// sendonce.Unsent), the entries may be this consumer's now, unseen, until
// they are idle for a min-idle again.
func (c Consumer) Claim(ctx context.Context, stream string, ids []string, minIdle time.Duration, isolateAfter int) (Claimed, error) {
	args := make([]any, 0, len(ids)+4)
	args = append(args, c.Group, c.Name, minIdle.Milliseconds(), isolateAfter)
	for _, id := range ids {
		args = append(args, id)
	}
	sent := time.Now()
	res, err := sendonce.Script(ctx, c.Client, claimScript, []string{stream}, args...).Slice()
	if err != nil {
		return Claimed{}, fmt.Errorf("claiming pending entries: %w", err)
	}
	if len(res) != 4 {
		return Claimed{}, fmt.Errorf("claiming pending entries: unexpected reply %v", res)
	}
	var out Claimed
	raw, _ := res[0].([]any)
	counts, _ := res[1].([]any)
	for i, e := range raw {
		m, err := xMessage(e)
		if err != nil {
			return Claimed{}, fmt.Errorf("claiming pending entries: %w", err)
		}
		var n int64
		if i < len(counts) {
			n, _ = counts[i].(int64)
		}
		out.Entries = append(out.Entries, Entry{XMessage: m, Deliveries: n, ClaimedAt: sent})
	}
	out.Isolated = replyStrings(res[2])
	out.Deleted = replyStrings(res[3])
	return out, nil
}

// xMessage converts an entry as a script returns it, {id, {field, value,
// ...}}, to a redis.XMessage.
func xMessage(v any) (redis.XMessage, error) {
	e, ok := v.([]any)
	if !ok || len(e) != 2 {
		return redis.XMessage{}, fmt.Errorf("unexpected entry %v", v)
	}
	id, _ := e[0].(string)
	kv, _ := e[1].([]any)
	values := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		values[k] = kv[i+1]
	}
	return redis.XMessage{ID: id, Values: values}, nil
}

// replyStrings returns the strings of a reply array.
func replyStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// heartbeat marks this consumer alive for GoneAfter.
func (r *Reclaimer) heartbeat(ctx context.Context) error {
	pipe := r.client.Pipeline()
	for _, s := range r.opts.Streams {
		pipe.Set(ctx, wire.HeartbeatKey(s, r.opts.Group, r.opts.Consumer), "1", r.opts.GoneAfter)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// cleanOnce deletes consumers idle past GoneAfter whose heartbeat expired
// and that own no pending entries; the last two are checked atomically with
// the delete, so a consumer that owns anything is never deleted. A stream
// that fails is counted and returned in the error, a streamErrors, and the
// others go on.
func (r *Reclaimer) cleanOnce(ctx context.Context) (int, error) {
	removed := 0
	var errs streamErrors
	for _, s := range r.opts.Streams {
		n, err := r.cleanStream(ctx, s)
		removed += n
		if err != nil {
			r.failed(ctx, &errs, opClean, s, err)
		}
	}
	return removed, errs.orNil()
}

// removeConsumerScript deletes a consumer only if it sent no heartbeat
// lately and owns no pending entry, atomically: DELCONSUMER would drop a
// consumer's pending entries from the group for good.
//
// KEYS[1] -> the stream
// KEYS[2] -> the consumer's heartbeat key
// ARGV[1] -> group
// ARGV[2] -> consumer
// Returns 1 when the consumer was deleted.
var removeConsumerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

func (r *Reclaimer) cleanStream(ctx context.Context, s string) (int, error) {
	consumers, err := r.client.XInfoConsumers(ctx, s, r.opts.Group).Result()
	if err != nil {
		// No group, or no stream yet (a partition nobody has read).
		if redis.HasErrorPrefix(err, "NOGROUP") || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "no such key") {
			return 0, nil
		}
		return 0, err
	}
	removed := 0
	for _, c := range consumers {
		if c.Name == r.opts.Consumer || c.Pending > 0 || c.Idle < r.opts.GoneAfter {
			continue
		}
		n, err := removeConsumerScript.Run(ctx, r.client,
			[]string{s, wire.HeartbeatKey(s, r.opts.Group, c.Name)}, r.opts.Group, c.Name).Int()
		if err != nil {
			return removed, err
		}
		if n == 1 {
			removed++
			r.metrics.ConsumersRemoved.WithLabelValues(s).Inc()
			r.logger.Info("removed a gone consumer", "stream", s, "consumer", c.Name, "idle", c.Idle.Round(time.Second))
		}
	}
	return removed, nil
}

// Leave removes this consumer's heartbeat and, when it owns nothing, the
// consumer itself, so that a scale-down leaves no husks behind. Call it after
// the last acknowledgement of a clean shutdown.
func (r *Reclaimer) Leave(ctx context.Context) {
	for _, s := range r.opts.Streams {
		hb := wire.HeartbeatKey(s, r.opts.Group, r.opts.Consumer)
		if err := r.client.Del(ctx, hb).Err(); err != nil {
			return
		}
		_ = removeConsumerScript.Run(ctx, r.client, []string{s, hb}, r.opts.Group, r.opts.Consumer).Err()
	}
}

// leaseScript renews this consumer's claim on entries it still owns: XCLAIM
// to itself resets the idle time (JUSTID leaves the delivery count alone).
// An entry owned by someone else is not taken back. An entry that is no
// longer pending at all was acknowledged elsewhere, or trimmed from the
// stream and dropped from the pending list by an XAUTOCLAIM (which does so
// whatever the idle time and owner): nobody runs it now but its handler
// here. XCLAIM itself drops an entry trimmed from the stream out of the
// pending list and does not return it.
//
// KEYS[1] -> the stream
// ARGV[1] -> group
// ARGV[2] -> this consumer
// ARGV[3..] -> entry IDs
// Returns {IDs another consumer owns, IDs this renewal found trimmed (and
// dropped), IDs no longer pending}.
var leaseScript = redis.NewScript(`
local lost, trimmed, gone = {}, {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 then
    gone[#gone + 1] = ARGV[i]
  elseif p[1][2] ~= ARGV[2] then
    lost[#lost + 1] = ARGV[i]
  else
    local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if #r == 0 then trimmed[#trimmed + 1] = ARGV[i] end
  end
end
return {lost, trimmed, gone}
`)

// Leased is what Lease found of the entries it was given. Nobody else can
// be running an entry Trimmed or Gone, so their handlers can go on; they
// need no lease any more.
type Leased struct {
	Lost    []string // another consumer owns them now (claimed after an outage): their handlers should stop
	Trimmed []string // found trimmed from the stream, and dropped from the pending list by this renewal
	Gone    []string // no longer pending at all: acknowledged elsewhere, or trimmed and dropped by someone's XAUTOCLAIM
}

// LeaseState is what a renewal found of one entry.
type LeaseState int

// The states of an entry after Lease.
const (
	Renewed LeaseState = iota // still this consumer's: its idle time was reset
	Lost
	Trimmed
	Gone
)

// State returns what the renewal found of id, one of the IDs given.
func (l Leased) State(id string) LeaseState {
	switch {
	case slices.Contains(l.Lost, id):
		return Lost
	case slices.Contains(l.Trimmed, id):
		return Trimmed
	case slices.Contains(l.Gone, id):
		return Gone
	}
	return Renewed
}

// Lease resets the idle time of entries this consumer is still working on,
// so that no other consumer claims them while a slow handler runs, and
// reports those it could not renew (Leased).
func (c Consumer) Lease(ctx context.Context, stream string, ids []string) (Leased, error) {
	args := make([]any, 0, len(ids)+2)
	args = append(args, c.Group, c.Name)
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := leaseScript.Run(ctx, c.Client, []string{stream}, args...).Slice()
	if err != nil {
		return Leased{}, err
	}
	if len(res) != 3 {
		return Leased{}, fmt.Errorf("renewing leases: unexpected reply %v", res)
	}
	return Leased{Lost: replyStrings(res[0]), Trimmed: replyStrings(res[1]), Gone: replyStrings(res[2])}, nil
}
