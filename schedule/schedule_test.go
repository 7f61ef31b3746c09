package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/schedule"
)

func TestParse(t *testing.T) {
	es, err := schedule.Parse("report.requested 0 3 * * *; cleanup.run  @every 5m ;audit.daily @daily;")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Type+"|"+e.Spec)
	}
	want := []string{"report.requested|0 3 * * *", "cleanup.run|@every 5m", "audit.daily|@daily"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if es, err := schedule.Parse(" ; "); err != nil || len(es) != 0 {
		t.Errorf("Parse of no entries = %v, %v", es, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a 0 3 * *", `entry 1 "a 0 3 * *": expected exactly 5 fields, found 4: [0 3 * *]: want a 5-field cron expression`},
		{"a @hourly; b 0 0 3 * * *", `entry 2 "b 0 0 3 * * *": expected exactly 5 fields, found 6`},
		{"a @hourly; b 61 * * * *", `entry 2 "b 61 * * * *": end of range (61) above maximum (59): 61`},
		{"cleanup.run @every 5x", `entry 1 "cleanup.run @every 5x": @every 5x: want a Go duration of at least 1s such as 30s, 5m or 1h`},
		{"cleanup.run @every 500ms", `@every 500ms: want a Go duration of at least 1s`},
		{"cleanup.run @every -1m", `@every -1m: want a Go duration of at least 1s`},
		{"report.requested", `entry 1 "report.requested": no SPEC after the type`},
		{"a @fortnightly", `entry 1 "a @fortnightly": unrecognized descriptor: @fortnightly`},
		{"a @hourly; a @hourly", `entry 2 "a @hourly": given twice: each entry at most once`},
	} {
		_, err := schedule.Parse(tc.in)
		if !errors.Is(err, schedule.ErrBadEntry) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Pure date arithmetic on fixed dates: the ticks of cron entries in a time
// zone (across a daylight saving change) and of @every on the epoch's grid.
func TestNextPrev(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	for _, tc := range []struct {
		spec       string
		loc        *time.Location
		at         string
		prev, next string
	}{
		{"0 3 * * *", time.UTC, "2026-12-05T01:42:10Z", "2026-12-04T03:00:00Z", "2026-12-05T03:00:00Z"},
		{"0 3 * * *", time.UTC, "2026-12-05T03:00:00Z", "2026-12-05T03:00:00Z", "2026-12-06T03:00:00Z"},
		{"0 3 * * *", berlin, "2026-12-05T01:42:10Z", "2026-12-04T02:00:00Z", "2026-12-05T02:00:00Z"},
		// 29 March 2026: Berlin moves from UTC+1 to UTC+2 at 02:00 local.
		{"30 4 * * *", berlin, "2026-03-29T12:00:00Z", "2026-03-29T02:30:00Z", "2026-03-30T02:30:00Z"},
		{"@hourly", time.UTC, "2026-12-05T01:42:10Z", "2026-12-05T01:00:00Z", "2026-12-05T02:00:00Z"},
		{"@yearly", time.UTC, "2026-12-05T01:42:10Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"*/15 * * * 1-5", time.UTC, "2026-12-05T01:42:10Z", "2026-12-04T23:45:00Z", "2026-12-07T00:00:00Z"}, // 5 Dec is a Saturday
		{"@every 1s", time.UTC, "2026-12-05T01:42:10.5Z", "2026-12-05T01:42:10Z", "2026-12-05T01:42:11Z"},
		{"@every 5m", berlin, "2026-12-05T01:42:10Z", "2026-12-05T01:40:00Z", "2026-12-05T01:45:00Z"},
		{"@every 5m", time.UTC, "2026-12-05T01:45:00Z", "2026-12-05T01:45:00Z", "2026-12-05T01:50:00Z"},
		{"@every 7m", time.UTC, "1970-01-01T00:20:00Z", "1970-01-01T00:14:00Z", "1970-01-01T00:21:00Z"},
		{"@every 1h", time.UTC, "1969-12-31T23:30:00Z", "1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z"},
	} {
		e := schedule.MustParseEntry("t", tc.spec)
		at := mustTime(t, tc.at)
		if got := e.Prev(at, tc.loc); !got.Equal(mustTime(t, tc.prev)) {
			t.Errorf("%s in %s: Prev(%s) = %s, want %s", tc.spec, tc.loc, tc.at, got.UTC().Format(time.RFC3339Nano), tc.prev)
		}
		if got := e.Next(at, tc.loc); !got.Equal(mustTime(t, tc.next)) {
			t.Errorf("%s in %s: Next(%s) = %s, want %s", tc.spec, tc.loc, tc.at, got.UTC().Format(time.RFC3339Nano), tc.next)
		}
	}
	if got := schedule.MustParseEntry("t", "0 0 30 2 *").Prev(mustTime(t, "2026-12-05T01:42:10Z"), time.UTC); !got.IsZero() {
		t.Errorf("Prev of a date that never comes = %s, want zero", got)
	}
}

func TestEvent(t *testing.T) {
	tick := mustTime(t, "2026-12-05T03:00:00Z")
	e := schedule.MustParseEntry("report.requested", "0 3 * * *")
	if got, want := string(e.Data(tick, time.UTC)), `{"tick":"2026-12-05T03:00:00Z","schedule":"0 3 * * *"}`; got != want {
		t.Errorf("Data = %s, want %s", got, want)
	}
	id := e.EventID(tick)
	if !strings.HasPrefix(id, "tick-") || len(id) != 5+32 {
		t.Errorf("EventID = %q, want tick- and 32 hex digits", id)
	}
	for _, other := range []string{
		schedule.MustParseEntry("report.requested", "0 3 * * *").EventID(tick.In(time.FixedZone("x", 3600))),
	} {
		if other != id {
			t.Errorf("the same tick in another zone has id %q, want %q", other, id)
		}
	}
	for _, other := range []string{
		e.EventID(tick.Add(24 * time.Hour)),
		schedule.MustParseEntry("report.requested", "@daily").EventID(tick),
		schedule.MustParseEntry("report.done", "0 3 * * *").EventID(tick),
	} {
		if other == id {
			t.Errorf("another tick, spec or type has the same id %q", id)
		}
	}
}
