package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/points"
	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func noEnv(string) string { return "" }

// pluginTypes are the types every demo must process.
var pluginTypes = []string{"user.updated", "points.transfer", "score.submitted", "notification.requested", "session.touched", "report.requested"}

// processed reads the processed column of the demo's table for typ.
func processed(t *testing.T, out, typ string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(typ) + `\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("demo output has no row for %s:\n%s", typ, out)
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestDemoOnEmbeddedRedis(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--demo", "--demo-events", "100"}, noEnv, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	for _, typ := range pluginTypes {
		if processed(t, out.String(), typ) == 0 {
			t.Errorf("demo processed no %s:\n%s", typ, &out)
		}
	}
	for _, want := range []string{
		"NOT DURABLE",
		"embedded SQLite",
		"every event accounted for",
		"leaderboard leaderboard:daily:",
		"rank.changed received:",
		"notification received: notifications:",
		"(conserved by every transfer)",
		`error="permanent: txn: refused: insufficient balance`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, &out)
		}
	}
}

func TestDemoOnGivenRedis(t *testing.T) {
	srv := testredis.Start(t)
	env := func(k string) string {
		if k == "REDIS_URL" {
			return srv.URL()
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--demo", "--demo-events", "60"}, env, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s%s", err, &out, &errOut)
	}
	if strings.Contains(out.String(), "NOT DURABLE") || !strings.Contains(out.String(), "using the Redis at "+srv.URL()) {
		t.Errorf("demo with REDIS_URL must use it:\n%s", &out)
	}
	for _, typ := range pluginTypes {
		if processed(t, out.String(), typ) == 0 {
			t.Errorf("demo processed no %s:\n%s", typ, &out)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--demo", "--demo-events", "0"}, "--demo-events=0: want at least 1"},
		{[]string{"--demo-events", "x"}, `invalid value "x" for flag -demo-events`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, noEnv, &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestPluginConfiguration(t *testing.T) {
	for _, tc := range []struct {
		plugins, dbURL, want string
	}{
		{"users,nope", "", `WORKER_PLUGINS="users,nope" is invalid`},
		{"points,points", "", `WORKER_PLUGINS="points,points" is invalid`},
		{"users", "", `DATABASE_URL="" is invalid: want a postgres:// URL when WORKER_PLUGINS includes users`},
		{"points", "mysql://x", `DATABASE_URL="mysql://x" is invalid`},
	} {
		t.Run(tc.plugins, func(t *testing.T) {
			t.Setenv("WORKER_PLUGINS", tc.plugins)
			t.Setenv("DATABASE_URL", tc.dbURL)
			t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
			err := run(context.Background(), nil, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
			var cerr *config.Error
			if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want a configuration error containing %q", err, tc.want)
			}
		})
	}
}

// TestDaemonRegistersEnabledPlugins runs the daemon as main does, with the
// plugins that need no database, and sends it a transfer.
func TestDaemonRegistersEnabledPlugins(t *testing.T) {
	srv := testredis.Start(t)
	t.Setenv("REDIS_URL", srv.URL())
	t.Setenv("WORKER_PLUGINS", "points,scores,notifications,sessions,reports")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("WORKER_HTTP_ADDR", "off")
	t.Setenv("WORKER_STREAMS", "events")
	t.Setenv("WORKER_BLOCK", "100ms")
	t.Setenv("WORKER_PLUGINS_PREFIX", "sw:plugins:")
	rdb := srv.Client(t)
	ctx := context.Background()
	ledger := points.New(rdb, &points.Options{Prefix: "sw:plugins:"})
	if err := ledger.Grant(ctx, "alice", 10); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "events", Values: []string{"type", points.Type, "data", `{"from":"alice","to":"bob","amount":4}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(runCtx, nil, noEnv, &bytes.Buffer{}, &stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := ledger.Balance(ctx, "bob"); b == 4 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the transfer was not applied in 30s: %v", <-done)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	if !strings.Contains(stderr.String(), "points.transfer") || strings.Contains(stderr.String(), `"user.updated"`) {
		t.Errorf("start log should list the enabled types only:\n%s", &stderr)
	}
}
