// Package schedule is the periodic events' schedule: the entries of
// WORKER_SCHEDULE ("TYPE SPEC; TYPE SPEC …"), the ticks of each, and the
// event published for a tick. The worker's scheduler publishes them; streamctl
// shows them. It computes; it sends nothing to Redis.
//
// A SPEC is a standard 5-field cron expression (minute hour day-of-month
// month day-of-week), a descriptor (@yearly, @monthly, @weekly, @daily,
// @midnight, @hourly) or @every DURATION, parsed by github.com/robfig/cron/v3.
// Cron ticks are computed in the time zone given (WORKER_SCHEDULE_TZ), so
// "0 3 * * *" is 03:00 there, daylight saving time included. @every ticks are
// the multiples of the duration since the Unix epoch (1970-01-01T00:00:00Z):
// every process computes the same ticks whenever it started, so "the tick" is
// the same instant for all of them. @every 1h ticks on the hour, @every 5m at
// :00, :05 …; a duration that does not divide a day (@every 7m) ticks at its
// multiples since the epoch, not from midnight.
package schedule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MinEvery is the shortest @every duration.
const MinEvery = time.Second

// Entry is one entry of a schedule: events of Type, at the ticks of Spec.
type Entry struct {
	// Type is the type of the events published.
	Type string
	// Spec is the cron expression, descriptor or @every DURATION, as given.
	Spec string

	every time.Duration // @every; 0 for cron
	cron  cron.Schedule
}

// Name is the entry as written, "TYPE SPEC": it names the entry in Redis
// and in errors.
func (e Entry) Name() string { return e.Type + " " + e.Spec }

// parser is the standard cron parser with descriptors; @every is handled
// here, aligned to the epoch.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrBadEntry is what every parse error wraps (errors.Is).
var ErrBadEntry = errors.New("bad schedule entry")

// EntryError is an entry that does not parse.
type EntryError struct {
	// N is the entry's position, from 1; 0 for an entry given alone.
	N int
	// Entry is the entry as written.
	Entry string
	// Reason says what is wrong and what is allowed.
	Reason string
}

func (e *EntryError) Error() string {
	if e.N > 0 {
		return fmt.Sprintf("entry %d %q: %s", e.N, e.Entry, e.Reason)
	}
	return fmt.Sprintf("entry %q: %s", e.Entry, e.Reason)
}

func (e *EntryError) Unwrap() error { return ErrBadEntry }

// Parse parses a schedule: entries separated by ';', each "TYPE SPEC".
// Empty entries (a trailing ';') are ignored; an entry given twice is
// refused.
func Parse(s string) ([]Entry, error) {
	var out []Entry
	seen := map[string]bool{}
	for i, raw := range strings.Split(s, ";") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		typ, spec, _ := strings.Cut(raw, " ")
		e, err := ParseEntry(typ, spec)
		if err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				ee.N, ee.Entry = i+1, raw
			}
			return nil, err
		}
		if seen[e.Name()] {
			return nil, &EntryError{N: i + 1, Entry: raw, Reason: "given twice: each entry at most once"}
		}
		seen[e.Name()] = true
		out = append(out, e)
	}
	return out, nil
}

// ParseEntry parses one entry: events of type typ at the ticks of spec.
func ParseEntry(typ, spec string) (Entry, error) {
	spec = strings.Join(strings.Fields(spec), " ")
	e := Entry{Type: typ, Spec: spec}
	bad := func(reason string) (Entry, error) {
		return Entry{}, &EntryError{Entry: strings.TrimSpace(typ + " " + spec), Reason: reason}
	}
	switch {
	case typ == "" || strings.ContainsAny(typ, " \t\r\n;"):
		return bad("want TYPE SPEC, with an event type without spaces first")
	case spec == "":
		return bad("no SPEC after the type: want a 5-field cron expression (0 3 * * *), a descriptor (@hourly, @daily) or @every DURATION (@every 5m)")
	}
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		every, err := time.ParseDuration(d)
		if err != nil || every < MinEvery {
			return bad(fmt.Sprintf("@every %s: want a Go duration of at least %s such as 30s, 5m or 1h", d, MinEvery))
		}
		e.every = every
		return e, nil
	}
	sched, err := parser.Parse(spec)
	if err != nil {
		return bad(fmt.Sprintf("%v: want a 5-field cron expression (minute hour day-of-month month day-of-week, e.g. 0 3 * * *), a descriptor (@yearly, @monthly, @weekly, @daily, @hourly) or @every DURATION", err))
	}
	e.cron = sched
	return e, nil
}

// MustParseEntry is ParseEntry that panics on a bad entry, for entries
// written in code.
func MustParseEntry(typ, spec string) Entry {
	e, err := ParseEntry(typ, spec)
	if err != nil {
		panic(err)
	}
	return e
}

// Next is the first tick strictly after t, in loc (cron) or on the epoch's
// grid (@every). It is zero when there is none (a cron date that never comes,
// such as 0 0 30 2 *).
func (e Entry) Next(t time.Time, loc *time.Location) time.Time {
	if e.every > 0 {
		return e.floor(t).Add(e.every)
	}
	return e.cron.Next(t.In(loc))
}

// floor is the last @every tick at or before t.
func (e Entry) floor(t time.Time) time.Time {
	d := int64(e.every)
	n := t.UnixNano()
	q := n / d
	if n%d < 0 {
		q--
	}
	return time.Unix(0, q*d).In(t.Location())
}

// lookBack is how far Prev looks for a cron tick.
const lookBack = 5 * 366 * 24 * time.Hour

// Prev is the last tick at or before t, or zero when there is none in the
// five years before t.
func (e Entry) Prev(t time.Time, loc *time.Location) time.Time {
	if e.every > 0 {
		return e.floor(t)
	}
	// The cron parser only goes forward: look back a minute, then twice as
	// far each time, until a tick is in the window, then walk to the last
	// one. The window is at most twice the gap to the last tick.
	for w := time.Minute; w <= lookBack; w *= 2 {
		s := e.cron.Next(t.Add(-w).In(loc))
		if s.IsZero() || s.After(t) {
			continue
		}
		for {
			n := e.cron.Next(s)
			if n.IsZero() || n.After(t) {
				return s
			}
			s = n
		}
	}
	return time.Time{}
}

// EventID is the id field of the event of tick: derived from the type, the
// spec and the tick's instant, so that every worker makes the same id for a
// tick and the worker's dedupe window recognises a tick published twice.
func (e Entry) EventID(tick time.Time) string {
	h := sha256.Sum256([]byte(e.Type + "\n" + e.Spec + "\n" + tick.UTC().Format(time.RFC3339Nano)))
	return "tick-" + hex.EncodeToString(h[:16])
}

// Data is the data field of the event of tick: JSON with the tick, RFC 3339
// in loc, and the entry's spec.
//
//	{"tick":"2026-12-05T03:00:00Z","schedule":"0 3 * * *"}
func (e Entry) Data(tick time.Time, loc *time.Location) []byte {
	b, _ := json.Marshal(struct {
		Tick     string `json:"tick"`
		Schedule string `json:"schedule"`
	}{tick.In(loc).Format(time.RFC3339Nano), e.Spec})
	return b
}

// The policies for ticks that passed while no worker ran
// (WORKER_SCHEDULE_MISSED).
const (
	// MissedLatest publishes the latest missed tick once, late.
	MissedLatest = "latest"
	// MissedSkip publishes none of them.
	MissedSkip = "skip"
)

// Grace is how late a tick may be published and still count as on time: a
// tick that came due while every worker was busy, restarting or cut off from
// Redis for less than this is published late, in order; an older one that
// no worker published was missed, and the missed-tick policy decides.
const Grace = 10 * time.Second

// Registration is an entry as a worker registers it in the hash beside the
// schedule's stream (wire.ScheduleEntryField), JSON-encoded, so that
// streamctl schedule can show the entry and compute its next tick without
// the workers' environment.
type Registration struct {
	Type   string `json:"type"`
	Spec   string `json:"spec"`
	TZ     string `json:"tz"`     // WORKER_SCHEDULE_TZ
	Missed string `json:"missed"` // WORKER_SCHEDULE_MISSED
}
