package test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
)

// TestUnusableHTTPAddr starts the worker with a WORKER_HTTP_ADDR it cannot
// serve on, against a real Redis holding one event: it must exit on its own
// within the deadline, with one line naming the variable and the address —
// 2 for a value validation refuses, 1 for an address that is well formed but
// cannot be listened on — and without reading the event.
func TestUnusableHTTPAddr(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/customworker", "customworker", raceEnabled)
	srv := testredis.Shared(t)
	rdb := srv.Client(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests

	for _, tc := range []struct {
		name, addr string
		code       int
		says       []string // besides WORKER_HTTP_ADDR and the address
	}{
		{name: "PortInUse", addr: busy.Addr().String(), code: 1, says: []string{"address already in use"}},
		{name: "UnresolvableHost", addr: "no-such-host.invalid:8080", code: 1},
		{name: "PortOutOfRange", addr: ":99999", code: 2, says: []string{"want "}},
		{name: "PortNotANumber", addr: "127.0.0.1:metrics", code: 2, says: []string{"want "}},
		{name: "PortZero", addr: "127.0.0.1:0", code: 2, says: []string{"want "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := testredis.Prefix(t) + "events"
			if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{"type", "ok", "data", `{"seq":1}`}}).Err(); err != nil {
				t.Fatal(err)
			}
			env := workerEnv(srv.URL(), stream, "w1", map[string]string{"WORKER_HTTP_ADDR": tc.addr})
			// A worker that hangs is killed at the deadline and fails the
			// test, rather than holding the suite.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = envList(env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("WORKER_HTTP_ADDR=%s: the worker did not exit within the deadline; output:\n%s", tc.addr, tail(stdout.String()+stderr.String(), 4<<10))
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Errorf("WORKER_HTTP_ADDR=%s: exit %v, want exit status %d", tc.addr, err, tc.code)
			}
			// The last line of stderr is the reason (the JSON log comes before it).
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			msg := lines[len(lines)-1]
			for _, s := range append([]string{"WORKER_HTTP_ADDR", tc.addr}, tc.says...) {
				if !strings.Contains(msg, s) {
					t.Errorf("last line of stderr does not say %q: %q", s, msg)
				}
			}
			if len(lines) != 1 {
				t.Errorf("stderr is not one line:\n%s", stderr.String())
			}
			groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range groups {
				if g.EntriesRead > 0 || g.Pending > 0 {
					t.Errorf("group %s read the event (entries read %d, pending %d): a worker that cannot serve must not consume", g.Name, g.EntriesRead, g.Pending)
				}
			}
			t.Logf("stderr: %s", msg)
		})
	}
}
