package test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// testBadConfiguration starts the custom worker with one bad variable at a
// time: it must exit 2 at once with one line on stderr naming the variable,
// the value given and what is allowed, before touching Redis.
func testBadConfiguration(t *testing.T, bin string) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, value string
		shown            string // the value as the message shows it; value when empty
		secret           string // must not appear in the output
		names            string // the message names this too (a bad entry of a list)
	}{
		{name: "ConcurrencyNotANumber", key: "WORKER_CONCURRENCY", value: "abc"},
		{name: "ZeroMaxAttempts", key: "WORKER_MAX_ATTEMPTS", value: "0"},
		{name: "UnknownLogFormat", key: "LOG_FORMAT", value: "xml"},
		{name: "UnknownLogLevel", key: "LOG_LEVEL", value: "loud"},
		{name: "HTTPRedisURL", key: "REDIS_URL", value: "http://x"},
		{name: "RedisURLPasswordRedacted", key: "REDIS_URL", value: "http://app:hunter2@x", shown: "http://app:xxxxx@x", secret: "hunter2"},
		{name: "RetryBaseNotADuration", key: "WORKER_RETRY_BASE", value: "soon"},
		{name: "NegativeShutdownTimeout", key: "WORKER_SHUTDOWN_TIMEOUT", value: "-1s"},
		{name: "UnknownGroupStart", key: "WORKER_GROUP_START", value: "middle"},
		{name: "HTTPAddrWithoutPort", key: "WORKER_HTTP_ADDR", value: "localhost"},
		{name: "StreamIsTheDelayedSet", key: "WORKER_STREAMS", value: "events:delayed"},
		{name: "RedisURLBadOptionValue", key: "REDIS_URL", value: "redis://app:hunter2@127.0.0.1:1/0?dial_timeout=banana", shown: "redis://app:xxxxx@127.0.0.1:1/0?dial_timeout=banana", secret: "hunter2"},
		{name: "RedisURLUnknownOption", key: "REDIS_URL", value: "redis://127.0.0.1:1/0?dial_timout=1s"},
		{name: "BadScheduleSpec", key: "WORKER_SCHEDULE", value: "report.requested 0 3 * * *; cleanup.run @every 5x", names: `entry 2 "cleanup.run @every 5x"`},
		{name: "BadScheduleCron", key: "WORKER_SCHEDULE", value: "report.requested 0 25 * * *", names: `entry 1 "report.requested 0 25 * * *": end of range (25) above maximum (23)`},
		{name: "ScheduleWithoutSpec", key: "WORKER_SCHEDULE", value: "report.requested", names: `entry 1 "report.requested": no SPEC`},
		{name: "UnknownScheduleTZ", key: "WORKER_SCHEDULE_TZ", value: "Mars/Olympus"},
		{name: "UnknownScheduleMissed", key: "WORKER_SCHEDULE_MISSED", value: "all"},
		{name: "ScheduleStreamIsADLQ", key: "WORKER_SCHEDULE_STREAM", value: "events:dlq"},
		{name: "RedisURLPortOutOfRange", key: "REDIS_URL", value: "redis://app:hunter2@127.0.0.1:99999/0", shown: "redis://app:xxxxx@127.0.0.1:99999/0", secret: "hunter2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Nothing listens on port 1: a worker that wrongly accepted the
			// configuration would keep failing to connect until killed.
			env := workerEnv("redis://127.0.0.1:1/0", "events", "w1", map[string]string{tc.key: tc.value})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = envList(env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%s=%s: the worker did not exit; stderr:\n%s", tc.key, tc.value, tail(stderr.String(), 4<<10))
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Errorf("%s=%s: exit %v, want exit status 2", tc.key, tc.value, err)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q, want nothing", stdout.String())
			}
			msg := strings.TrimSuffix(stderr.String(), "\n")
			shown := tc.shown
			if shown == "" {
				shown = tc.value
			}
			switch {
			case msg == "" || strings.Contains(msg, "\n"):
				t.Errorf("stderr is not one line:\n%s", msg)
			case !strings.Contains(msg, tc.key) || !strings.Contains(msg, shown):
				t.Errorf("stderr %q does not name %s and the value %q", msg, tc.key, shown)
			case !strings.Contains(msg, "want "):
				t.Errorf("stderr %q does not say what is allowed", msg)
			case !strings.Contains(msg, tc.names):
				t.Errorf("stderr %q does not name %s", msg, tc.names)
			}
			if tc.secret != "" && strings.Contains(stderr.String(), tc.secret) {
				t.Errorf("stderr leaks the password: %q", msg)
			}
			t.Logf("stderr: %s", msg)
		})
	}
}
