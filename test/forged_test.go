package test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// TestForgedFields runs a worker process on entries whose fields anyone
// able to write to the stream could have forged: a type that is not UTF-8
// (as a Prometheus label it would panic the process), and a message that
// kills its worker with attempt=MaxInt64 (the attempt arithmetic would wrap
// and the crash-loop protection never dead-letter it). A supervisor restarts
// the worker under the same name whenever the message kills it. An attempt
// above the limit leaves the message no attempts: it kills the worker once
// and is dead-lettered as abandoned; the other type is dead-lettered without
// harm, and every other entry is processed.
func TestForgedFields(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/faultworker", "faultworker", raceEnabled)
	const total, crash, badType, badAttempt, maxAttempts = 20, 100, 101, 102, 3
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishRange(t, newProducer(t, srv), stream, 1, total, always("ok"), always(0))
	add := func(fields ...string) {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add("type", "crash", "data", string(payload(crash, 0)), "attempt", "9223372036854775807")
	add("type", "\xff\xfe", "data", string(payload(badType, 0)))
	add("type", "ok", "data", string(payload(badAttempt, 0)), "attempt", "-1")

	env := faultEnv(srv.URL(), stream, "a", map[string]string{"WORKER_MAX_ATTEMPTS": strconv.Itoa(maxAttempts)})
	w := startWorker(t, bin, "worker", env)
	crashes := 0
	processedKey := stream + ":processed"
	waitFor(t, 60*time.Second, nil, "the forged entries dead-lettered and everything else processed", func() (bool, string) {
		if w.exited() { // the supervisor
			if code := w.cmd.ProcessState.ExitCode(); code != 3 {
				t.Fatalf("the worker exited with code %d, want 3 (the crash handler) or nothing", code)
			}
			crashes++
			if crashes > maxAttempts {
				t.Fatalf("the crash message killed the worker %d times; WORKER_MAX_ATTEMPTS is %d", crashes, maxAttempts)
			}
			w = startWorker(t, bin, fmt.Sprintf("worker (restart %d)", crashes), env)
		}
		done := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return done == total+1 && g.dead == 2 && g.pending == 0 && g.lag == 0,
			fmt.Sprintf("processed=%d/%d crashes=%d %s", done, total+1, crashes, g)
	})
	w.stop(30 * time.Second)

	if ran, _ := c.HGet(ctx, stream+":crashes", strconv.Itoa(crash)).Int(); ran != 1 || crashes != 1 {
		t.Errorf("the crash message ran %d times and killed %d workers, want once: its attempt field is past the limit", ran, crashes)
	}
	dlq, err := c.XRange(ctx, wire.DeadLetterKey(stream), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[int]string{}
	for _, e := range dlq {
		data, _ := e.Values[wire.FieldData].(string)
		reasons[seqOf(t, data)], _ = e.Values[wire.FieldError].(string)
	}
	if r := reasons[crash]; !strings.Contains(r, "abandoned: delivered 1 times") {
		t.Errorf("the crash message's dead letter says %q, want it abandoned after 1 delivery", r)
	}
	if r := reasons[badType]; !strings.Contains(r, "no handler for message type") {
		t.Errorf("the invalid type's dead letter says %q, want no handler", r)
	}
	if n := counts(t, c, processedKey)[badAttempt]; n < 1 {
		t.Errorf("the entry with attempt=-1 was never processed")
	}
}
