package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/wire"
)

// testSchedule lists the entries a worker registered beside a stream, as a
// table and as JSON, and refuses a bad command line with exit 2.
func testSchedule(t *testing.T, c *binary) {
	f := c.fixture(t)
	key := wire.ScheduleKey(f.stream)
	last := time.Now().Add(-time.Hour).Truncate(time.Hour)
	f.c.HSet(f.ctx, key,
		wire.ScheduleEntryField("cleanup.run @every 5m"), `{"type":"cleanup.run","spec":"@every 5m","tz":"UTC","missed":"latest"}`,
		wire.ScheduleTickField("cleanup.run @every 5m"), strconv.FormatInt(last.UnixMilli(), 10),
		wire.ScheduleEntryField("report.requested 0 3 * * *"), `{"type":"report.requested","spec":"0 3 * * *","tz":"Europe/Berlin","missed":"skip"}`,
	)
	r := c.run(t, []string{"schedule", "--stream", f.stream})
	r.Want(t, 0)
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "STREAM") || !strings.Contains(lines[0], "LAST") || !strings.Contains(lines[0], "NEXT") ||
		!strings.Contains(lines[1], "cleanup.run") || !strings.Contains(lines[1], last.UTC().Format(time.RFC3339)) ||
		!strings.Contains(lines[2], "report.requested") || !strings.Contains(lines[2], "Europe/Berlin") || !strings.Contains(lines[2], "T03:00:00+0") {
		t.Errorf("schedule printed:\n%s", r.Stdout)
	}

	r = c.run(t, []string{"schedule", "--stream", f.stream, "--json"})
	r.Want(t, 0)
	var doc struct {
		Stream  string
		Entries []struct {
			Stream, Type, Spec, TZ, Missed string
			Last, Next                     *string
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("--json printed %q: %v", r.Stdout, err)
	}
	if doc.Stream != f.stream || len(doc.Entries) != 2 {
		t.Fatalf("--json = %+v", doc)
	}
	e := doc.Entries[0]
	if e.Type != "cleanup.run" || e.Spec != "@every 5m" || e.Last == nil || *e.Last != last.UTC().Format(time.RFC3339Nano) || e.Next == nil {
		t.Errorf("cleanup entry = %+v", e)
	} else if next, err := time.Parse(time.RFC3339Nano, *e.Next); err != nil || next.Minute()%5 != 0 || next.Second() != 0 || next.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("cleanup entry's next tick %s, %v: want a multiple of 5 minutes after now", *e.Next, err)
	}
	if e := doc.Entries[1]; e.Type != "report.requested" || e.TZ != "Europe/Berlin" || e.Missed != "skip" || e.Last != nil || e.Next == nil {
		t.Errorf("report entry = %+v", e)
	}

	r = c.run(t, []string{"schedule", "--stream", f.stream + "-none"})
	r.Want(t, 0)
	if want := "no periodic events registered for stream \"" + f.stream + "-none\"\n"; r.Stdout != want {
		t.Errorf("schedule of a stream without one printed %q, want %q", r.Stdout, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule"}, "streamctl: --stream is required\nRun 'streamctl schedule --help' for usage.\n"},
		{[]string{"schedule", "--stream", f.stream, "--partitions", "0"}, "streamctl: --partitions 0: want 1 to 1024"},
		{[]string{"schedule", "--stream", "{x}", "--partitions", "4"}, "a partitioned stream is named without braces"},
		{[]string{"schedule", "--stream", f.stream, "extra"}, `unexpected argument "extra"`},
		{[]string{"schedule", "--bogus"}, "streamctl: unknown flag: --bogus\nRun 'streamctl schedule --help' for usage.\n"},
	} {
		r := c.run(t, tc.args)
		r.Want(t, 2, tc.want)
	}
}
