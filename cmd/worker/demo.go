package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/builtin"
	"github.com/streamworker/streamworker/handlers/notifications"
	"github.com/streamworker/streamworker/handlers/reports"
	"github.com/streamworker/streamworker/handlers/scores"
	"github.com/streamworker/streamworker/handlers/users"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

const demoStream = "demo:events"

// runDemo feeds sample events through the real runtime and prints what
// happened to each type. Without REDIS_URL it runs on an embedded in-memory
// Redis, which keeps nothing.
func runDemo(ctx context.Context, n int, getenv func(string) string, stdout, stderr io.Writer) error {
	if n < 1 {
		return fmt.Errorf("%w: --demo-events=%d: want at least 1", errUsage, n)
	}
	cfg := config.Default()
	cfg.Streams = []string{demoStream}
	cfg.Group = "demo"
	cfg.Consumer = "demo-1"
	cfg.MaxAttempts = 3
	cfg.RetryBase = 20 * time.Millisecond
	cfg.RetryMax = 200 * time.Millisecond
	cfg.PromoteInterval = 20 * time.Millisecond
	cfg.Block = 200 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.HTTPAddr = "off"
	if u := getenv("REDIS_URL"); u != "" {
		cfg.RedisURL = u
		if err := cfg.Validate(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "demo: using the Redis at %s (stream %q)\n", config.Redact(u), demoStream)
	} else {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("starting the embedded redis: %w", err)
		}
		defer mr.Close()
		cfg.RedisURL = "redis://" + mr.Addr() + "/0"
		fmt.Fprintln(stdout, strings.Repeat("!", 78))
		fmt.Fprintln(stdout, "!! DEMO MODE: embedded in-memory Redis (miniredis). NOT DURABLE: nothing is")
		fmt.Fprintln(stdout, "!! kept, nothing survives this process. Set REDIS_URL to use a real Redis.")
		fmt.Fprintln(stdout, strings.Repeat("!", 78))
	}

	plugins := builtin.Config{Enabled: append([]string(nil), builtin.Names...), DatabaseURL: getenv("DATABASE_URL")}
	if err := plugins.Validate(true); err != nil {
		return err
	}
	var store users.Store
	if plugins.DatabaseURL == "" {
		dir, err := os.MkdirTemp("", "streamworker-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		lite, err := users.OpenSQLite(ctx, filepath.Join(dir, "users.db"))
		if err != nil {
			return err
		}
		defer lite.Close()
		store = lite
		fmt.Fprintln(stdout, "demo: users are stored in an embedded SQLite (throwaway); set DATABASE_URL for PostgreSQL")
	} else {
		pg, err := openPostgres(ctx, plugins.DatabaseURL)
		if err != nil {
			return err
		}
		defer pg.Close()
		s := users.NewPostgres(pg, "streamworker_demo")
		if err := s.Migrate(ctx); err != nil {
			return err
		}
		store = s
		fmt.Fprintf(stdout, "demo: users are stored in PostgreSQL at %s (schema streamworker_demo)\n", config.Redact(plugins.DatabaseURL))
	}

	client, err := producer.NewClient(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer client.Close()
	// A demo against a real Redis starts from clean keys.
	if err := client.Del(ctx, demoStream, wire.DelayedKey(demoStream), wire.DeadLetterKey(demoStream)).Err(); err != nil {
		return fmt.Errorf("connecting to redis: %w", err)
	}

	// The plugins, as cmd/worker builds them, with a database that fails
	// now and then (to show retries) and a tight notification limit (to
	// show delays).
	flaky := &flakyStore{Store: store}
	mux := worker.NewMux()
	var b builtins
	defer b.close()
	setup := b.setup(plugins, mux, pluginOptions{
		userStore:     flaky,
		notifications: &notifications.Options{Limit: ratelimit.Limit{Rate: 3, Period: 200 * time.Millisecond}},
		reports:       &reports.Options{Busy: 50 * time.Millisecond},
	})
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// What the plugins act on: balances, sessions.
	events, want, err := demoSeed(ctx, client, n)
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribers, as a live view would have: one rank.changed and one
	// user's notifications, kept as samples.
	samples := &demoSamples{}
	subsReady := make(chan struct{}, 2)
	subsDone := make(chan struct{}, 2)
	nt := notify.New(client, &notify.Options{Logger: logger, OnSubscribe: func([]string, bool) { subsReady <- struct{}{} }})
	go func() {
		defer func() { subsDone <- struct{}{} }()
		_ = nt.Subscribe(runCtx, notify.JSON(func(_ context.Context, _ *notify.Notification, ev scores.RankChanged) error {
			samples.add(&samples.rank, ev)
			return nil
		}), "rank.changed")
	}()
	go func() {
		defer func() { subsDone <- struct{}{} }()
		_ = nt.PSubscribe(runCtx, notify.JSON(func(_ context.Context, m *notify.Notification, ev notifications.Request) error {
			samples.add(&samples.notes, fmt.Sprintf("%s <- %q", m.Channel, ev.Title))
			return nil
		}), "notifications:*")
	}()
	defer func() { cancel(); <-subsDone; <-subsDone }()
	for range 2 {
		select {
		case <-subsReady:
		case <-time.After(10 * time.Second):
			return errors.New("demo: subscribers not ready in 10s")
		}
	}

	p := producer.New(client, producer.Options{})
	for i := 0; i < len(events); i += 100 {
		if _, err := p.PublishBatch(ctx, demoStream, events[i:min(i+100, len(events))]); err != nil {
			return fmt.Errorf("feeding events: %w", err)
		}
	}
	// One event without a type: it must end in the dead-letter stream.
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: demoStream, Values: []string{"data", `{"note":"no type"}`}}).Err(); err != nil {
		return fmt.Errorf("feeding events: %w", err)
	}
	want["(none)"]++
	fmt.Fprintf(stdout, "demo: fed %d events to %q; processing...\n", len(events)+1, demoStream)

	done := make(chan error, 1)
	go func() {
		done <- worker.Run(runCtx, cfg, mux, setup, worker.WithRedis(client), worker.WithRegistry(reg), worker.WithLogger(logger))
	}()

	start := time.Now()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got map[string]outcomeCount
wait:
	for {
		select {
		case <-tick.C:
			if got = countOutcomes(reg); finished(got, want) {
				break wait
			}
		case <-deadline:
			cancel()
			return errors.Join(fmt.Errorf("demo did not finish in 60s: got %v, want %v final outcomes", got, want), <-done)
		case err := <-done:
			cancel()
			return fmt.Errorf("worker stopped early: %w", err)
		}
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return err
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tprocessed\tretried\tdelayed\tdead-lettered\t")
	types := make([]string, 0, len(got))
	for t := range got {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		c := got[t]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", t, c.acked, c.retried, c.delayed, c.dead)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "demo: every event accounted for in %s\n", took.Round(time.Millisecond))
	demoReport(ctx, stdout, client, &b, flaky, samples)
	return nil
}

type outcomeCount struct{ acked, retried, delayed, dead int }

// finished reports whether every type has as many final outcomes
// (acknowledged or dead-lettered) as events were sent.
func finished(got map[string]outcomeCount, want map[string]int) bool {
	for t, n := range want {
		if c := got[t]; c.acked+c.dead < n {
			return false
		}
	}
	return true
}

// countOutcomes reads streamworker_messages_total by type.
func countOutcomes(g prometheus.Gatherer) map[string]outcomeCount {
	out := map[string]outcomeCount{}
	for typ, o := range worker.Outcomes(g) {
		if typ == "" {
			typ = "(none)"
		}
		out[typ] = outcomeCount{acked: o[worker.OutcomeAcked], retried: o[worker.OutcomeRetried], delayed: o[worker.OutcomeDelayed], dead: o[worker.OutcomeDead]}
	}
	return out
}
