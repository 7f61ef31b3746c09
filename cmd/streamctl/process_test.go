package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// TestProcess builds the streamctl binary once and runs every whole-process
// test against it as a parallel subtest; the binary is removed when they
// have all finished.
func TestProcess(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), ".", "streamctl", raceEnabled)
	srv := testredis.Shared(t)
	c := &binary{bin: bin, redisURL: srv.URL(), srv: srv}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *binary)
	}{
		{"Status", testStatus},
		{"StatusJSON", testStatusJSON},
		{"StatusOfEveryStream", testStatusOfEveryStream},
		{"Pending", testPending},
		{"DLQList", testDLQList},
		{"DLQReplayIDs", testDLQReplayIDs},
		{"DLQReplayAll", testDLQReplayAll},
		{"DLQPurge", testDLQPurge},
		{"UsageErrors", testUsageErrors},
		{"Failures", testFailures},
		{"Escapes", testEscapes},
		{"StatusPartial", testStatusPartial},
		{"Help", testHelp},
		{"Partitions", testPartitions},
		{"Cluster", testCluster},
		{"Scripts", testScripts},
		{"Cancel", testCancel},
		{"CancelJSON", testCancelJSON},
		{"Rewind", testRewind},
		{"RewindJSON", testRewindJSON},
		{"RewindPartitions", testRewindPartitions},
		{"CancelRewindUsageErrors", testCancelRewindUsageErrors},
		{"CancelRewindFailures", testCancelRewindFailures},
		{"Web", testWeb},
		{"WebUsage", testWebUsage},
		{"PauseResume", testPauseResume},
		{"Schedule", testSchedule},
		{"Trim", testTrim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, c)
		})
	}
}

// result is what one run of the binary did.
type result = testbin.Result

// binary runs the binary under test.
type binary struct {
	bin, redisURL string
	srv           *testredis.Server
}

// run runs the binary with args, with REDIS_URL as the only setting from
// the environment; extra are more NAME=value pairs.
func (c *binary) run(t *testing.T, args []string, extra ...string) result {
	t.Helper()
	return testbin.Run(t, c.bin, "", append([]string{"REDIS_URL=" + c.redisURL}, extra...), args)
}

// fixture is a stream of the test's own on the shared server.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	c      *redis.Client
	stream string
}

func (c *binary) fixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{t: t, ctx: context.Background(), c: c.srv.Client(t), stream: testredis.Prefix(t) + "orders"}
}

func (f *fixture) add(stream string, fields ...string) string {
	f.t.Helper()
	id, err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) group(name string) {
	f.t.Helper()
	if err := f.c.XGroupCreateMkStream(f.ctx, f.stream, name, "0").Err(); err != nil {
		f.t.Fatal(err)
	}
}

// read delivers up to n new entries to consumer, leaving them pending.
func (f *fixture) read(group, consumer string, n int64) {
	f.t.Helper()
	err := f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{f.stream, ">"}, Count: n, Block: -1}).Err()
	if err != nil {
		f.t.Fatal(err)
	}
}

// dead appends a dead letter as the runtime writes it.
func (f *fixture) dead(typ, errText string) string {
	f.t.Helper()
	return f.add(wire.DeadLetterKey(f.stream),
		"type", typ, "data", `{"to":"bob.example.com"}`, "id", "e-1", "attempt", "2",
		"error", errText, "attempts", "2", "origin_id", "1700000000000-0",
		"failed_at", "2026-11-26T01:02:03.456789Z", "group", "workers", "consumer", "w1")
}

// columns returns the start offset of each column of a table line.
func columns(line string) []int {
	var starts []int
	for i := range len(line) {
		if line[i] != ' ' && (i == 0 || (i >= 2 && line[i-1] == ' ' && line[i-2] == ' ')) {
			starts = append(starts, i)
		}
	}
	return starts
}

// requireAligned fails unless every line of a table starts its cells where
// the header starts its columns.
func requireAligned(t *testing.T, table string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	head := columns(lines[0])
	for _, l := range lines[1:] {
		for _, c := range columns(l) {
			found := false
			for _, h := range head {
				found = found || h == c
			}
			if !found {
				t.Errorf("table not aligned: a cell at %d in %q; columns at %v:\n%s", c, l, head, table)
				return
			}
		}
	}
}
