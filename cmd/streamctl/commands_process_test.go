package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// durations in human output vary from run to run.
var durations = regexp.MustCompile(`\b[0-9.]+(ms|s|m[0-9]+s|h[0-9]+m)\b`)

// sizes matches a byte size in status's MEMORY column, which depends on
// the Redis server's version and allocator: sized replaces each by "<size>"
// and drops the padding after it.
var sizes = regexp.MustCompile(`\b[0-9.]+ (KiB|MiB|GiB|TiB|B)  +`)

func sized(s string) string { return sizes.ReplaceAllString(s, "<size>") }

func testStatus(t *testing.T, c *binary) {
	f := c.fixture(t)
	for range 5 {
		f.add(f.stream, "type", "order.created", "data", "{}")
	}
	f.group("workers")
	f.group("audit")
	f.read("workers", "w1", 2)
	f.read("workers", "w2", 1)
	f.c.ZAdd(f.ctx, wire.DelayedKey(f.stream), redis.Z{Score: 1, Member: "m"})
	f.dead("email.send", "permanent: invalid email address")

	r := c.run(t, []string{"status", "--stream", f.stream})
	r.Want(t, 0)
	s := f.stream
	want := strings.Join([]string{
		"STREAM" + pad(s, "STREAM") + "  LENGTH  DELAYED  DEAD  GROUPS  MEMORY   ACKED",
		s + "  5       1        1     2       <size>0 B (0)",
		"",
		"STREAM" + pad(s, "STREAM") + "  GROUP    PENDING  LAG  OLDEST PENDING  CONSUMERS",
		s + "  audit    0        5    -               0",
		s + "  workers  3        2    D           2",
		"",
		"STREAM" + pad(s, "STREAM") + "  GROUP    CONSUMER  PENDING  IDLE",
		s + "  workers  w1        2        D",
		s + "  workers  w2        1        D",
		"",
	}, "\n")
	got := durations.ReplaceAllStringFunc(r.Stdout, func(d string) string { return "D" + strings.Repeat(" ", len(d)-1) })
	// Re-align the replaced durations' padding for comparison.
	got = regexp.MustCompile(`D +`).ReplaceAllString(got, "D")
	want = regexp.MustCompile(`D +`).ReplaceAllString(want, "D")
	got = sized(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stdout (-want +got):\n%s\nfull:\n%s", diff, r.Stdout)
	}
	for _, table := range strings.Split(r.Stdout, "\n\n") {
		requireAligned(t, table)
	}
	if r.Stderr != "" {
		t.Errorf("stderr = %q", r.Stderr)
	}
}

// pad is the padding after header h in a column as wide as cell.
func pad(cell, h string) string { return strings.Repeat(" ", len(cell)-len(h)) }

func testStatusJSON(t *testing.T, c *binary) {
	f := c.fixture(t)
	first := f.add(f.stream, "type", "a")
	mid := f.add(f.stream, "type", "a")
	f.add(f.stream, "type", "a")
	f.group("workers")
	f.group("lagless")
	f.read("workers", "w1", 1)
	f.c.XDel(f.ctx, f.stream, mid) // the lag of "lagless" becomes unknown

	r := c.run(t, []string{"status", "--stream", f.stream, "--json"})
	r.Want(t, 0)
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.Stdout)
	}
	// Ages and idle times vary: check they are numbers, then fix them.
	g := doc["streams"].([]any)[0].(map[string]any)["groups"].([]any)
	w := g[1].(map[string]any)
	age, ok1 := w["oldest_pending_age_ms"].(float64)
	idle, ok2 := w["consumers"].([]any)[0].(map[string]any)["idle_ms"].(float64)
	if !ok1 || !ok2 || age < 0 || idle < 0 {
		t.Fatalf("oldest_pending_age_ms %v, idle_ms %v: want numbers", w["oldest_pending_age_ms"], w["consumers"])
	}
	w["oldest_pending_age_ms"] = 0.0
	w["consumers"].([]any)[0].(map[string]any)["idle_ms"] = 0.0
	// Memory depends on the server's version and allocator.
	st := doc["streams"].([]any)[0].(map[string]any)
	if m, ok := st["memory_bytes"].(float64); !ok || m <= 0 {
		t.Fatalf("memory_bytes %v: want a positive number", st["memory_bytes"])
	}
	st["memory_bytes"] = 0.0
	want := map[string]any{"streams": []any{map[string]any{
		"stream": f.stream, "length": 2.0, "delayed": 0.0, "dead": 0.0,
		"memory_bytes": 0.0, "acked_entries": nil, "acked_memory_bytes": nil, // lagless's lag is unknown
		"groups": []any{
			map[string]any{
				"group": "lagless", "pending": 0.0, "lag": nil, "last_delivered_id": "0-0",
				"oldest_pending_id": nil, "oldest_pending_age_ms": nil, "consumers": []any{}, "paused": false,
			},
			map[string]any{
				"group": "workers", "pending": 1.0, "lag": nil, "last_delivered_id": first,
				"oldest_pending_id": first, "oldest_pending_age_ms": 0.0,
				"consumers": []any{map[string]any{"consumer": "w1", "pending": 1.0, "idle_ms": 0.0}}, "paused": false,
			},
		},
		"paused": []any{},
	}}}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("JSON (-want +got):\n%s\nfull:\n%s", diff, r.Stdout)
	}
}

// Without --stream, status shows every stream of the database but the
// dead-letter streams.
func testStatusOfEveryStream(t *testing.T, c *binary) {
	srv := testredis.Start(t) // a database of this test's own
	rc := srv.Client(t)
	for _, s := range []string{"b", "a"} {
		rc.XAdd(t.Context(), &redis.XAddArgs{Stream: s, Values: []string{"type", "x"}})
		rc.XAdd(t.Context(), &redis.XAddArgs{Stream: wire.DeadLetterKey(s), Values: []string{"type", "x"}})
	}
	rc.Set(t.Context(), "not-a-stream", "x", 0)
	r := testbin.Run(t, c.bin, "", []string{"REDIS_URL=" + srv.URL()}, []string{"status"})
	r.Want(t, 0)
	want := "STREAM  LENGTH  DELAYED  DEAD  GROUPS  MEMORY   ACKED\na       1       0        1     0       <size>0 B (0)\nb       1       0        1     0       <size>0 B (0)\n"
	if sized(r.Stdout) != want {
		t.Errorf("stdout = %q, want %q", r.Stdout, want)
	}
	r = testbin.Run(t, c.bin, "", []string{"REDIS_URL=" + testredis.Start(t).URL()}, []string{"status"})
	r.Want(t, 0)
	if r.Stdout != "no streams\n" {
		t.Errorf("empty database: stdout = %q", r.Stdout)
	}
	r = testbin.Run(t, c.bin, "", []string{"REDIS_URL=" + testredis.Start(t).URL()}, []string{"status", "--json"})
	if r.Stdout != "{\n  \"streams\": []\n}\n" {
		t.Errorf("empty database, JSON: stdout = %q", r.Stdout)
	}
}

func testPending(t *testing.T, c *binary) {
	f := c.fixture(t)
	a := f.add(f.stream, "type", "order.created")
	b := f.add(f.stream, "type", "order.paid")
	d := f.add(f.stream, "type", "order.paid")
	f.group("workers")
	f.group("idle")
	f.read("workers", "w1", 2)
	f.read("workers", "w2", 1)
	f.c.XDel(f.ctx, f.stream, b)

	r := c.run(t, []string{"pending", "--stream", f.stream})
	r.Want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	wantRows := [][]string{
		{"GROUP", "ID", "CONSUMER", "IDLE", "DELIVERIES", "TYPE"},
		{"workers", a, "w1", "D", "1", "order.created"},
		{"workers", b, "w1", "D", "1", "(deleted)"},
		{"workers", d, "w2", "D", "1", "order.paid"},
	}
	var gotRows [][]string
	for _, l := range lines {
		row := strings.Fields(l)
		if len(row) == 6 && row[3] != "IDLE" {
			row[3] = durations.ReplaceAllString(row[3], "D")
		}
		gotRows = append(gotRows, row)
	}
	if diff := cmp.Diff(wantRows, gotRows); diff != "" {
		t.Errorf("table (-want +got):\n%s\n%s", diff, r.Stdout)
	}
	requireAligned(t, r.Stdout)

	r = c.run(t, []string{"pending", "--stream", f.stream, "--group", "workers", "--limit", "1"})
	r.Want(t, 0, "streamctl: group workers: showing 1 of 3 pending entries (--limit 1)")
	if strings.Count(r.Stdout, "\n") != 2 {
		t.Errorf("--limit 1: stdout = %q, want the header and one row", r.Stdout)
	}

	r = c.run(t, []string{"pending", "--stream", f.stream, "--group", "idle"})
	r.Want(t, 0)
	if r.Stdout != "nothing pending on stream \""+f.stream+"\"\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}

	r = c.run(t, []string{"pending", "--stream", f.stream, "--group", "workers", "--json"})
	r.Want(t, 0)
	var doc struct {
		Stream string `json:"stream"`
		Groups []struct {
			Group   string `json:"group"`
			Pending int    `json:"pending"`
			Entries []struct {
				ID         string `json:"id"`
				Consumer   string `json:"consumer"`
				Deliveries int    `json:"deliveries"`
				Type       string `json:"type"`
				Deleted    bool   `json:"deleted"`
			} `json:"entries"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Stream != f.stream || len(doc.Groups) != 1 || doc.Groups[0].Pending != 3 || len(doc.Groups[0].Entries) != 3 ||
		!doc.Groups[0].Entries[1].Deleted || doc.Groups[0].Entries[2].Type != "order.paid" {
		t.Errorf("JSON = %+v", doc)
	}

	r = c.run(t, []string{"pending", "--stream", f.stream, "--group", "nope"})
	r.Want(t, 1, `streamctl: no such consumer group: stream "`+f.stream+`" has no group "nope" (it has: idle, workers)`)
	r = c.run(t, []string{"pending", "--stream", f.stream + "-none"})
	r.Want(t, 1, `streamctl: no such stream: "`+f.stream+`-none"`)
}

func testDLQList(t *testing.T, c *binary) {
	f := c.fixture(t)
	a := f.dead("email.send", "permanent: invalid email address")
	b := f.dead("report.build", "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 7 [running]:\nmain.build(...)")
	r := c.run(t, []string{"dlq", "ls", "--stream", f.stream})
	r.Want(t, 0)
	want := "ID" + pad(a, "ID") + "  TYPE          ATTEMPTS  FAILED AT             ORIGIN ID        ERROR\n" +
		a + "  email.send    2         2026-11-26T01:02:03Z  1700000000000-0  permanent: invalid email address\n" +
		b + "  report.build  2         2026-11-26T01:02:03Z  1700000000000-0  panic: runtime error: index out of range [3] with length 3…\n"
	if diff := cmp.Diff(want, r.Stdout); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}

	r = c.run(t, []string{"dlq", "ls", "--stream", f.stream, "--limit", "1"})
	r.Want(t, 0, "streamctl: showing 1 of 2 dead letters (--limit 1)")
	if strings.Count(r.Stdout, "\n") != 2 {
		t.Errorf("--limit 1: stdout = %q", r.Stdout)
	}

	r = c.run(t, []string{"dlq", "ls", "--stream", f.stream, "--json", "--limit", "1"})
	r.Want(t, 0)
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatal(err)
	}
	wantDoc := map[string]any{
		"stream": f.stream, "dlq": wire.DeadLetterKey(f.stream), "length": 2.0,
		"entries": []any{map[string]any{"id": a, "fields": map[string]any{
			"type": "email.send", "data": `{"to":"bob.example.com"}`, "id": "e-1", "attempt": "2",
			"error": "permanent: invalid email address", "attempts": "2", "origin_id": "1700000000000-0",
			"failed_at": "2026-11-26T01:02:03.456789Z", "group": "workers", "consumer": "w1",
		}}},
	}
	if diff := cmp.Diff(wantDoc, doc); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}

	r = c.run(t, []string{"dlq", "ls", "--stream", f.stream + "-none"})
	r.Want(t, 0)
	if r.Stdout != "no dead letters in "+wire.DeadLetterKey(f.stream+"-none")+"\n" {
		t.Errorf("empty DLQ: stdout = %q", r.Stdout)
	}
}

func testDLQReplayIDs(t *testing.T, c *binary) {
	f := c.fixture(t)
	a := f.dead("email.send", "x")
	b := f.dead("email.send", "y")
	keep := f.dead("email.send", "z")
	noType := f.add(wire.DeadLetterKey(f.stream), "error", "malformed delayed envelope", "envelope", "zz")

	r := c.run(t, []string{"dlq", "replay", "--stream", f.stream, "--id", a + "," + b, "--id", "1-1", "--id", noType})
	r.Want(t, 1,
		"streamctl: 1-1: not in the dead-letter stream\n",
		"streamctl: "+noType+": has no type field; left in the dead-letter stream\n")
	got := f.c.XRange(f.ctx, f.stream, "-", "+").Val()
	if len(got) != 2 {
		t.Fatalf("stream = %v, want the 2 replayed", got)
	}
	wantOut := "replayed " + a + " as " + got[0].ID + "\nreplayed " + b + " as " + got[1].ID + "\n"
	if r.Stdout != wantOut {
		t.Errorf("stdout = %q, want %q", r.Stdout, wantOut)
	}
	want := map[string]any{"type": "email.send", "data": `{"to":"bob.example.com"}`, "id": "e-1", "origin_id": "1700000000000-0"}
	if diff := cmp.Diff(want, got[0].Values); diff != "" {
		t.Errorf("replayed entry (-want +got):\n%s", diff)
	}
	left := f.c.XRange(f.ctx, wire.DeadLetterKey(f.stream), "-", "+").Val()
	if len(left) != 2 || left[0].ID != keep || left[1].ID != noType {
		t.Errorf("DLQ = %v, want %s and %s left", left, keep, noType)
	}
}

func testDLQReplayAll(t *testing.T, c *binary) {
	f := c.fixture(t)
	for range 120 {
		f.dead("email.send", "x")
	}
	r := c.run(t, []string{"dlq", "replay", "--stream", f.stream, "--all"})
	r.Want(t, 0)
	if r.Stdout != "replayed 120 dead letters from "+wire.DeadLetterKey(f.stream)+" into "+f.stream+"\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}
	if n := f.c.XLen(f.ctx, f.stream).Val(); n != 120 {
		t.Errorf("stream length %d, want 120", n)
	}
	noType := f.add(wire.DeadLetterKey(f.stream), "error", "x")
	f.dead("email.send", "x")
	r = c.run(t, []string{"dlq", "replay", "--stream", f.stream, "--all"})
	r.Want(t, 1, "streamctl: 1 dead letter without a type field stay in "+wire.DeadLetterKey(f.stream)+
		" (the worker would dead-letter them again; purge them with --id): "+noType)
	if r.Stdout != "replayed 1 dead letter from "+wire.DeadLetterKey(f.stream)+" into "+f.stream+"\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}
}

func testDLQPurge(t *testing.T, c *binary) {
	f := c.fixture(t)
	a := f.dead("a", "x")
	b := f.dead("b", "x")
	f.dead("c", "x")
	dlq := wire.DeadLetterKey(f.stream)

	r := c.run(t, []string{"dlq", "purge", "--stream", f.stream, "--id", a})
	r.Want(t, 2, "streamctl: purge deletes dead letters for good: add --yes to confirm\nRun 'streamctl dlq purge --help' for usage.")
	if n := f.c.XLen(f.ctx, dlq).Val(); n != 3 {
		t.Fatalf("purge without --yes deleted something: DLQ length %d", n)
	}

	r = c.run(t, []string{"dlq", "purge", "--stream", f.stream, "--id", a, "--id", "1-1", "--yes"})
	r.Want(t, 1, "streamctl: 1-1: not in "+dlq)
	if r.Stdout != "purged 1 dead letter from "+dlq+"\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}
	if got := f.c.XRange(f.ctx, dlq, "-", "+").Val(); len(got) != 2 || got[0].ID != b {
		t.Errorf("DLQ = %v", got)
	}

	r = c.run(t, []string{"dlq", "purge", "--stream", f.stream, "--all", "--yes"})
	r.Want(t, 0)
	if r.Stdout != "purged 2 dead letters from "+dlq+"\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}
	if n := f.c.XLen(f.ctx, dlq).Val(); n != 0 {
		t.Errorf("DLQ length %d after --all", n)
	}
}

func testUsageErrors(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.dead("a", "x")
	s := []string{"--stream", f.stream}
	t.Run("Cases", func(t *testing.T) { // returns when its parallel subtests have
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"NoCommand", nil, "streamctl: missing command: status, pending, dlq, pause, resume, cancel, group, scripts, schedule, trim or web\nRun 'streamctl --help' for usage.\n"},
			{"StatusZeroPartitions", append([]string{"status", "--partitions", "0"}, s...), "streamctl: --partitions 0: want 1 to 1024 (1: the stream is not partitioned)\nRun 'streamctl status --help' for usage.\n"},
			{"StatusPartitionsWithoutStream", []string{"status", "--partitions", "4"}, "streamctl: --partitions needs --stream: the partitioned streams to show\nRun 'streamctl status --help' for usage.\n"},
			{"StatusPartitionedNameWithBraces", []string{"status", "--stream", "orders,{x}", "--partitions", "2"}, "streamctl: --stream \"{x}\" with --partitions 2: a partitioned stream is named without braces, its partitions are {{x}:0} … {{x}:1}\nRun 'streamctl status --help' for usage.\n"},
			{"UnknownCommand", []string{"stauts"}, "streamctl: unknown command \"stauts\" for \"streamctl\"; did you mean \"status\"?\nRun 'streamctl --help' for usage.\n"},
			{"UnknownDLQCommand", []string{"dlq", "lss"}, "streamctl: unknown command \"lss\" for \"streamctl dlq\"; did you mean \"ls\"?\nRun 'streamctl dlq --help' for usage.\n"},
			{"UnknownDLQCommandWithFlags", append([]string{"dlq", "replay-all"}, s...), "streamctl: unknown command \"replay-all\" for \"streamctl dlq\"; did you mean \"replay\"?\nRun 'streamctl dlq --help' for usage.\n"},
			{"UnknownCommandWithFlags", append([]string{"pendign", "--group", "g"}, s...), "streamctl: unknown command \"pendign\" for \"streamctl\"; did you mean \"pending\"?\nRun 'streamctl --help' for usage.\n"},
			{"NoDLQCommand", []string{"dlq"}, "streamctl: missing command: ls, replay or purge\nRun 'streamctl dlq --help' for usage.\n"},
			{"UnknownFlag", []string{"status", "--bogus"}, "streamctl: unknown flag: --bogus\nRun 'streamctl status --help' for usage.\n"},
			{"ExtraArgument", []string{"status", "orders"}, "streamctl: unexpected argument \"orders\" (every input is a flag)\nRun 'streamctl status --help' for usage.\n"},
			{"PendingMissingStream", []string{"pending"}, "streamctl: --stream is required\nRun 'streamctl pending --help' for usage.\n"},
			{"PendingZeroLimit", append([]string{"pending", "--limit", "0"}, s...), "streamctl: --limit 0: want a positive number\nRun 'streamctl pending --help' for usage.\n"},
			{"PendingBadLimit", append([]string{"pending", "--limit", "ten"}, s...), "streamctl: invalid argument \"ten\" for \"--limit\" flag: strconv.ParseInt: parsing \"ten\": invalid syntax\nRun 'streamctl pending --help' for usage.\n"},
			{"LsMissingStream", []string{"dlq", "ls"}, "streamctl: --stream is required\nRun 'streamctl dlq ls --help' for usage.\n"},
			{"LsNegativeLimit", append([]string{"dlq", "ls", "--limit", "-1"}, s...), "streamctl: --limit -1: want a positive number\nRun 'streamctl dlq ls --help' for usage.\n"},
			{"ReplayMissingStream", []string{"dlq", "replay", "--all"}, "streamctl: --stream is required\nRun 'streamctl dlq replay --help' for usage.\n"},
			{"ReplayNothingNamed", append([]string{"dlq", "replay"}, s...), "streamctl: name the entries with --id, or use --all\nRun 'streamctl dlq replay --help' for usage.\n"},
			{"ReplayIDAndAll", append([]string{"dlq", "replay", "--id", "1-0", "--all"}, s...), "streamctl: --all and --id cannot be used together\nRun 'streamctl dlq replay --help' for usage.\n"},
			{"ReplayBadID", append([]string{"dlq", "replay", "--id", "1700000000000"}, s...), "streamctl: --id: not a stream entry ID: \"1700000000000\" (want <milliseconds>-<sequence>, e.g. 1700000000000-0)\nRun 'streamctl dlq replay --help' for usage.\n"},
			{"PurgeWithoutYes", append([]string{"dlq", "purge", "--all"}, s...), "streamctl: purge deletes dead letters for good: add --yes to confirm\nRun 'streamctl dlq purge --help' for usage.\n"},
			{"PurgeIDAndAll", append([]string{"dlq", "purge", "--id", "1-0", "--all", "--yes"}, s...), "streamctl: --all and --id cannot be used together\nRun 'streamctl dlq purge --help' for usage.\n"},
			{"PurgeNothingNamed", append([]string{"dlq", "purge", "--yes"}, s...), "streamctl: name the entries with --id, or use --all\nRun 'streamctl dlq purge --help' for usage.\n"},
			{"PurgeBadID", append([]string{"dlq", "purge", "--id", "x-1", "--yes"}, s...), "streamctl: --id: not a stream entry ID: \"x-1\" (want <milliseconds>-<sequence>, e.g. 1700000000000-0)\nRun 'streamctl dlq purge --help' for usage.\n"},
			{"PauseMissingStream", []string{"pause"}, "streamctl: --stream is required: the stream to pause\nRun 'streamctl pause --help' for usage.\n"},
			{"ResumeMissingStream", []string{"resume", "--group", "g"}, "streamctl: --stream is required: the stream to resume\nRun 'streamctl resume --help' for usage.\n"},
			{"PauseDeadLetters", []string{"pause", "--stream", "orders:dlq"}, "streamctl: --stream \"orders:dlq\" is the dead letters key of \"orders\", not a stream: name the stream itself\nRun 'streamctl pause --help' for usage.\n"},
			{"PauseStarGroup", append([]string{"pause", "--group", "*"}, s...), "streamctl: --group * is not a group name: leave --group out for every group\nRun 'streamctl pause --help' for usage.\n"},
			{"ResumeEmptyGroup", append([]string{"resume", "--group", ""}, s...), "streamctl: --group is empty: name a group, or leave --group out for every group\nRun 'streamctl resume --help' for usage.\n"},
			{"PauseArgument", []string{"pause", "orders"}, "streamctl: unexpected argument \"orders\" (every input is a flag)\nRun 'streamctl pause --help' for usage.\n"},
			{"TrimMissingStream", []string{"trim", "--dry-run"}, "streamctl: --stream is required\nRun 'streamctl trim --help' for usage.\n"},
			{"TrimNeitherDryRunNorYes", append([]string{"trim"}, s...), "streamctl: give one of --dry-run (show what would be trimmed) or --yes (trim)\nRun 'streamctl trim --help' for usage.\n"},
			{"TrimDryRunAndYes", append([]string{"trim", "--dry-run", "--yes"}, s...), "streamctl: give one of --dry-run (show what would be trimmed) or --yes (trim)\nRun 'streamctl trim --help' for usage.\n"},
			{"TrimNegativeRetention", append([]string{"trim", "--yes", "--retention", "-1h"}, s...), "streamctl: --retention -1h0m0s: want 0 or a positive Go duration such as 24h\nRun 'streamctl trim --help' for usage.\n"},
			{"TrimBadRetention", append([]string{"trim", "--yes", "--retention", "a day"}, s...), "streamctl: invalid argument \"a day\" for \"--retention\" flag: time: invalid duration \"a day\"\nRun 'streamctl trim --help' for usage.\n"},
			{"BadYes", append([]string{"dlq", "purge", "--all", "--yes=maybe"}, s...), "streamctl: invalid argument \"maybe\" for \"--yes\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax\nRun 'streamctl dlq purge --help' for usage.\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := c.run(t, tc.args)
				r.Want(t, 2)
				if r.Stderr != tc.want || r.Stdout != "" {
					t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, tc.want)
				}
			})
		}
	})
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 || f.c.Exists(f.ctx, f.stream).Val() != 0 {
		t.Errorf("a refused command line changed Redis")
	}
}

func testFailures(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.c.Set(f.ctx, f.stream+"-string", "x", 0)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"NoSuchStream", []string{"status", "--stream", f.stream}, nil, 1, `streamctl: no such stream: "` + f.stream + "\"\n"},
		{"NotAStream", []string{"status", "--stream", f.stream + "-string"}, nil, 1, `streamctl: key "` + f.stream + `-string" is a string, not a stream` + "\n"},
		{"RedisDown", []string{"status"}, []string{"REDIS_URL=redis://127.0.0.1:1/0"}, 1, "streamctl: listing streams: dial tcp 127.0.0.1:1: connect: connection refused\n"},
		{"RedisDownDLQ", []string{"dlq", "ls", "--stream", "s"}, []string{"REDIS_URL=redis://127.0.0.1:1/0"}, 1, "streamctl: reading s:dlq: dial tcp 127.0.0.1:1: connect: connection refused\n"},
		{
			"BadRedisURL",
			[]string{"status"},
			[]string{"REDIS_URL=redis://u:secret@h:1/x"},
			2,
			`streamctl: REDIS_URL="redis://u:xxxxx@h:1/x" is invalid: want a database number after the host, such as /0` + "\n",
		},
		{
			"BadRedisURLOption",
			[]string{"status"},
			[]string{"REDIS_URL=redis://u:secret@h:1/0?dial_timeout=banana"},
			2,
			`streamctl: REDIS_URL="redis://u:xxxxx@h:1/0?dial_timeout=banana" is invalid: want query options go-redis knows, with valid values, such as ?dial_timeout=5s&pool_size=20 (invalid dial_timeout duration: time: invalid duration "banana")` + "\n",
		},
		{
			"RedisURLPortOutOfRange",
			[]string{"status"},
			[]string{"REDIS_URL=redis://h:99999/0"},
			2,
			`streamctl: REDIS_URL="redis://h:99999/0" is invalid: want a port from 1 to 65535 after the host, such as redis://host:6379/0 (no port is 6379)` + "\n",
		},
		{
			"ClusterAndSentinel",
			[]string{"status"},
			[]string{"REDIS_CLUSTER_ADDRS=127.0.0.1:7000", "REDIS_SENTINEL_MASTER=m"},
			2,
			`streamctl: REDIS_CLUSTER_ADDRS="127.0.0.1:7000" is invalid: want unset while REDIS_SENTINEL_ADDRS or REDIS_SENTINEL_MASTER is set: connect to a Redis Cluster (REDIS_CLUSTER_ADDRS) or to a Sentinel-managed primary (REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER), not both` + "\n",
		},
		{
			"BadSentinelAddr",
			[]string{"dlq", "ls", "--stream", "s"},
			[]string{"REDIS_SENTINEL_ADDRS=sentinel-0", "REDIS_SENTINEL_MASTER=m"},
			2,
			`streamctl: REDIS_SENTINEL_ADDRS="sentinel-0" is invalid: want comma-separated host:port addresses such as sentinel-0:26379,sentinel-1:26379 ("sentinel-0" is not host:port)` + "\n",
		},
		{
			"BadRedisURLFlag",
			[]string{"status", "--redis-url", "http://h"},
			nil, 2,
			`streamctl: --redis-url="http://h" is invalid: want a URL such as redis://host:6379/0 or rediss://user:password@host:6380/0` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := c.run(t, tc.args, tc.env...)
			r.Want(t, tc.code)
			if r.Stderr != tc.want || r.Stdout != "" {
				t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, tc.want)
			}
		})
	}
	// --redis-url overrides REDIS_URL. (The cases above run after this,
	// in parallel: this stream is another.)
	other := f.stream + "-other"
	f.add(other, "type", "a")
	r := c.run(t, []string{"status", "--stream", other, "--redis-url", c.redisURL}, "REDIS_URL=redis://127.0.0.1:1/0")
	r.Want(t, 0)
}

func testHelp(t *testing.T, c *binary) {
	for _, args := range [][]string{{"--help"}, {"status", "--help"}, {"dlq", "--help"}, {"dlq", "replay", "-h"}, {"help", "pending"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := c.run(t, args)
			r.Want(t, 0)
			if !strings.Contains(r.Stdout, "Usage:") || r.Stderr != "" {
				t.Errorf("streamctl %v: stdout %q, stderr %q; want usage on stdout", args, r.Stdout, r.Stderr)
			}
		})
	}
}
