package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/schedule"
	"github.com/streamworker/streamworker/wire"
)

// WithSchedule adds an entry to the schedule of periodic events, as an entry
// "typ spec" of WORKER_SCHEDULE does (see package schedule): every tick of
// spec publishes one event of type typ to the schedule's stream, once
// whatever the number of workers. A spec that does not parse stops Run with
// an error that errors.Is schedule.ErrBadEntry (Main exits 2).
func WithSchedule(typ, spec string) Option {
	return func(o *options) { o.schedule = append(o.schedule, [2]string{typ, spec}) }
}

// scheduleEntries are the entries of WORKER_SCHEDULE followed by those of
// WithSchedule; an entry given twice is refused.
func scheduleEntries(cfg config.Config, extra [][2]string) ([]schedule.Entry, error) {
	es := cfg.ScheduleEntries()
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.Name()] = true
	}
	for _, x := range extra {
		e, err := schedule.ParseEntry(x[0], x[1])
		if err != nil {
			return nil, fmt.Errorf("WithSchedule: %w", err)
		}
		if seen[e.Name()] {
			return nil, fmt.Errorf("WithSchedule: %w", &schedule.EntryError{Entry: e.Name(), Reason: "given twice (WORKER_SCHEDULE or WithSchedule): each entry at most once"})
		}
		seen[e.Name()] = true
		es = append(es, e)
	}
	return es, nil
}

// scheduler publishes the periodic events: for each entry, every tick once,
// whatever the number of workers running it. It is a component of the
// runtime (a feeder); it sleeps until the next tick of any entry.
//
// Exactly once per tick is the work of one Lua script per publish: it adds
// the event only if the tick is newer than the last tick published for the
// entry, which the hash wire.ScheduleKey(stream) holds, and records it in the
// same call. Every worker publishes every tick it sees due, in order; of two
// workers racing for one tick one adds it, and a late worker never publishes
// a tick older than one already published. There is no leader to be elected,
// or to be two.
//
// Each entry has a cursor: the last tick this worker has dealt with. At
// start it is the last tick published (from Redis), or now for an entry
// that never ran. Ticks after the cursor are published in order as they come
// due, late ones too while they are at most schedule.Grace old; older ones
// were missed (no worker ran), and the missed-tick policy decides: latest
// publishes the latest of them once, skip none.
type scheduler struct {
	client  redis.UniversalClient
	entries []*scheduled
	loc     *time.Location
	missed  string // schedule.MissedLatest or schedule.MissedSkip
	logger  *slog.Logger
	now     func() time.Time
}

// scheduled is one entry and where it stands.
type scheduled struct {
	entry  schedule.Entry
	stream string    // the stream (or partition) its events go to, beside its hash
	cursor time.Time // the last tick dealt with
	loaded bool      // cursor was set from Redis (load)
}

// newScheduler returns the scheduler of entries per cfg, or nil with no
// entries.
func newScheduler(client redis.UniversalClient, cfg config.Config, entries []schedule.Entry, logger *slog.Logger) *scheduler {
	if len(entries) == 0 {
		return nil
	}
	s := &scheduler{
		client: client, loc: cfg.ScheduleLocation(), missed: cfg.ScheduleMissed,
		logger: logger.With("component", "schedule"), now: time.Now,
	}
	target := cfg.ScheduleTarget()
	for _, e := range entries {
		stream := target
		if cfg.Partitions > 1 { // every tick of an entry goes to one partition, beside its hash
			stream = wire.PartitionStream(target, wire.PartitionFor(e.Name(), cfg.Partitions))
		}
		s.entries = append(s.entries, &scheduled{entry: e, stream: stream})
	}
	return s
}

// maxSleep bounds one sleep, so that a wall clock that jumps (a suspended
// host, a corrected clock) delays a tick by at most this much.
const maxSleep = time.Minute

// Run publishes the ticks as they come due until ctx ends. A failure (Redis
// unreachable) is logged when it starts and when it ends, and retried every
// second; the ticks that came due meanwhile are published late, in order,
// while they are at most schedule.Grace old.
func (s *scheduler) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		next, err := s.runOnce(ctx, s.now())
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && !failing:
			s.logger.Error("publishing periodic events failed; will retry", "error", err)
		case err == nil && failing:
			s.logger.Info("publishing periodic events works again")
		}
		failing = err != nil
		wait := min(next.Sub(s.now()), maxSleep)
		if next.IsZero() {
			wait = maxSleep
		}
		if failing {
			wait = time.Second
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// runOnce publishes every entry's ticks due at now and returns when the next
// one comes due (zero if never). An entry that fails is retried at the next
// call; the others go on.
func (s *scheduler) runOnce(ctx context.Context, now time.Time) (next time.Time, err error) {
	var errs []error
	for _, e := range s.entries {
		if err := s.runEntry(ctx, e, now); err != nil {
			errs = append(errs, fmt.Errorf("entry %q on stream %q: %w", e.entry.Name(), e.stream, err))
		}
		from := e.cursor
		if !e.loaded || from.Before(now.Add(-schedule.Grace)) {
			from = now // not loaded, or failing: its next tick from now
		}
		if n := e.entry.Next(from, s.loc); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next, errors.Join(errs...)
}

// runEntry publishes e's ticks due at now, in order.
func (s *scheduler) runEntry(ctx context.Context, e *scheduled, now time.Time) error {
	if !e.loaded {
		if err := s.load(ctx, e, now); err != nil {
			return err
		}
	}
	if graceStart := now.Add(-schedule.Grace); e.cursor.Before(graceStart) {
		if latest := e.entry.Prev(graceStart, s.loc); !latest.IsZero() && latest.After(e.cursor) {
			missed := latest.Sub(e.cursor)
			if s.missed == schedule.MissedLatest {
				s.logger.Info("ticks were missed while no worker ran; publishing the latest once",
					"entry", e.entry.Name(), "tick", latest.In(s.loc).Format(time.RFC3339Nano), "since", e.cursor.In(s.loc).Format(time.RFC3339Nano))
				if err := s.publish(ctx, e, latest); err != nil {
					return err
				}
			} else {
				s.logger.Info("ticks were missed while no worker ran; skipping them (WORKER_SCHEDULE_MISSED=skip)",
					"entry", e.entry.Name(), "through", latest.In(s.loc).Format(time.RFC3339Nano), "missed_for", missed.Round(time.Second))
			}
			e.cursor = later(e.cursor, latest)
		}
	}
	for t := e.entry.Next(e.cursor, s.loc); !t.IsZero() && !t.After(now); t = e.entry.Next(e.cursor, s.loc) {
		if err := s.publish(ctx, e, t); err != nil {
			return err
		}
	}
	return nil
}

// load sets e's cursor to the last tick published, or to now for an entry
// never published, and registers the entry in its hash.
func (s *scheduler) load(ctx context.Context, e *scheduled, now time.Time) error {
	key := wire.ScheduleKey(e.stream)
	reg, _ := json.Marshal(schedule.Registration{Type: e.entry.Type, Spec: e.entry.Spec, TZ: s.loc.String(), Missed: s.missed})
	if err := s.client.HSet(ctx, key, wire.ScheduleEntryField(e.entry.Name()), reg).Err(); err != nil {
		return fmt.Errorf("registering the entry (HSET %s): %w", key, err)
	}
	v, err := s.client.HGet(ctx, key, wire.ScheduleTickField(e.entry.Name())).Result()
	switch {
	case errors.Is(err, redis.Nil):
		e.cursor, e.loaded = now, true
		return nil
	case err != nil:
		return fmt.Errorf("reading the last tick (HGET %s): %w", key, err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("the last tick in %s is %q, not unix milliseconds", key, v)
	}
	e.cursor, e.loaded = time.UnixMilli(ms), true
	return nil
}

// scheduleScript publishes the event of a tick unless the entry's last
// published tick is as new or newer, and records the tick, in one call: of
// any number of workers running it for one tick, one adds the event.
//
// KEYS[1] -> the schedule hash (wire.ScheduleKey)
// KEYS[2] -> the stream
// ARGV[1] -> the entry's tick field (wire.ScheduleTickField)
// ARGV[2] -> the tick, unix ms
// ARGV[3…] -> the event's field/value pairs
// Returns {1 if it added the event else 0, the last tick published, unix ms}.
var scheduleScript = redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local tick = tonumber(ARGV[2])
if last and last >= tick then return {0, last} end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, tick}
`)

// publish publishes tick of e, unless a worker did, and moves e's cursor to
// it, or past it to the last tick published.
func (s *scheduler) publish(ctx context.Context, e *scheduled, tick time.Time) error {
	r, err := scheduleScript.Run(ctx, s.client, []string{wire.ScheduleKey(e.stream), e.stream},
		wire.ScheduleTickField(e.entry.Name()), tick.UnixMilli(),
		wire.FieldType, e.entry.Type, wire.FieldData, e.entry.Data(tick, s.loc), wire.FieldID, e.entry.EventID(tick)).Int64Slice()
	if err != nil {
		return fmt.Errorf("publishing the tick %s: %w", tick.In(s.loc).Format(time.RFC3339Nano), err)
	}
	if len(r) != 2 {
		return fmt.Errorf("schedule script returned %d values, want 2", len(r))
	}
	if r[0] == 1 {
		s.logger.Debug("periodic event published", "entry", e.entry.Name(), "stream", e.stream, "tick", tick.In(s.loc).Format(time.RFC3339Nano))
	}
	e.cursor = later(tick, time.UnixMilli(r[1]))
	return nil
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
