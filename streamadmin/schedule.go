package streamadmin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamworker/streamworker/schedule"
	"github.com/streamworker/streamworker/wire"
)

// ScheduleEntry is one entry of the periodic events published to a stream,
// as the workers registered it, with its last and next tick.
type ScheduleEntry struct {
	// Stream is the stream (or partition) the entry's events go to.
	Stream string
	// Type and Spec are the entry: events of Type at the ticks of Spec.
	Type, Spec string
	// TZ is the time zone of its cron ticks (WORKER_SCHEDULE_TZ); Missed
	// what the workers do with missed ticks (WORKER_SCHEDULE_MISSED).
	TZ, Missed string
	// Last is the last tick published; zero if none yet.
	Last time.Time
	// Next is the first tick after now; zero if it never comes.
	Next time.Time
	// Problem says why Next could not be computed (a registration this
	// version cannot read); empty otherwise.
	Problem string
}

// Schedule lists the entries of the periodic events published to stream,
// or, with partitions above 1, to its partitions: what the workers running
// them registered in wire.ScheduleKey, sorted by stream and entry. An entry
// stays listed after it is removed from WORKER_SCHEDULE, with its last tick
// no longer moving; HDEL its two fields to forget it.
func (a *Admin) Schedule(ctx context.Context, stream string, partitions int, now time.Time) ([]ScheduleEntry, error) {
	streams := []string{stream}
	if partitions > 1 {
		streams = wire.PartitionStreams(stream, partitions)
	}
	var out []ScheduleEntry
	for _, s := range streams {
		h, err := a.client.HGetAll(ctx, wire.ScheduleKey(s)).Result()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", wire.ScheduleKey(s), err)
		}
		for field, v := range h {
			name, ok := strings.CutPrefix(field, wire.ScheduleEntryField(""))
			if !ok {
				continue
			}
			out = append(out, scheduleEntry(s, name, v, h[wire.ScheduleTickField(name)], now))
		}
	}
	slices.SortFunc(out, func(x, y ScheduleEntry) int {
		return cmp.Or(cmp.Compare(x.Stream, y.Stream), cmp.Compare(x.Type+" "+x.Spec, y.Type+" "+y.Spec))
	})
	return out, nil
}

// scheduleEntry reads one registered entry of stream's hash.
func scheduleEntry(stream, name, registration, lastMS string, now time.Time) ScheduleEntry {
	e := ScheduleEntry{Stream: stream}
	e.Type, e.Spec, _ = strings.Cut(name, " ")
	var reg schedule.Registration
	if err := json.Unmarshal([]byte(registration), &reg); err != nil {
		e.Problem = "registration is not JSON: " + err.Error()
		return e
	}
	e.TZ, e.Missed = reg.TZ, reg.Missed
	loc, err := time.LoadLocation(reg.TZ)
	if err != nil {
		e.Problem = fmt.Sprintf("unknown time zone %q", reg.TZ)
		loc = time.UTC
	}
	if ms, err := strconv.ParseInt(lastMS, 10, 64); err == nil {
		e.Last = time.UnixMilli(ms).In(loc)
	}
	entry, err := schedule.ParseEntry(e.Type, e.Spec)
	if err != nil {
		e.Problem = err.Error()
		return e
	}
	if e.Problem == "" {
		e.Next = entry.Next(now, loc)
	}
	return e
}
