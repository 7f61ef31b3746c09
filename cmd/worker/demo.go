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
	cfg, closeRedis, err := demoConfig(getenv, stdout)
	if err != nil {
		return err
	}
	defer closeRedis()

	plugins := builtin.Config{Enabled: append([]string(nil), builtin.Names...), DatabaseURL: getenv("DATABASE_URL")}
	if err := plugins.Validate(true); err != nil {
		return err
	}
	store, closeStore, err := demoUserStore(ctx, plugins.DatabaseURL, stdout)
	if err != nil {
		return err
	}
	defer closeStore()

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
	samples := &demoSamples{}
	stopSubscribers, err := demoSubscribe(runCtx, client, logger, samples)
	defer func() { cancel(); stopSubscribers() }()
	if err != nil {
		return err
	}

	if err := demoFeed(ctx, client, events); err != nil {
		return err
	}
	want["(none)"]++ // demoFeed's event without a type
	fmt.Fprintf(stdout, "demo: fed %d events to %q; processing...\n", len(events)+1, demoStream)

	done := make(chan error, 1)
	go func() {
		done <- worker.Run(runCtx, cfg, mux, setup, worker.WithRedis(client), worker.WithRegistry(reg), worker.WithLogger(logger))
	}()
	start := time.Now()
	got, err := demoWait(reg, want, done, cancel)
	if err != nil {
		return err
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return err
	}

	printOutcomes(stdout, got)
	fmt.Fprintf(stdout, "demo: every event accounted for in %s\n", took.Round(time.Millisecond))
	demoReport(ctx, stdout, client, &b, flaky, samples)
	return nil
}

// demoConfig is the runtime's configuration for the demo: fast retries and
// promotion, no HTTP, on the Redis of REDIS_URL or, without it, on an
// embedded in-memory one, which the returned function stops.
func demoConfig(getenv func(string) string, stdout io.Writer) (config.Config, func(), error) {
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
			return cfg, nil, err
		}
		fmt.Fprintf(stdout, "demo: using the Redis at %s (stream %q)\n", config.Redact(u), demoStream)
		return cfg, func() {}, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return cfg, nil, fmt.Errorf("starting the embedded redis: %w", err)
	}
	cfg.RedisURL = "redis://" + mr.Addr() + "/0"
	fmt.Fprintln(stdout, strings.Repeat("!", 78))
	fmt.Fprintln(stdout, "!! DEMO MODE: embedded in-memory Redis (miniredis). NOT DURABLE: nothing is")
	fmt.Fprintln(stdout, "!! kept, nothing survives this process. Set REDIS_URL to use a real Redis.")
	fmt.Fprintln(stdout, strings.Repeat("!", 78))
	return cfg, mr.Close, nil
}

// demoUserStore is where the users plugin writes: the PostgreSQL of
// databaseURL, or a throwaway SQLite without one. The returned function
// closes it.
func demoUserStore(ctx context.Context, databaseURL string, stdout io.Writer) (users.Store, func(), error) {
	if databaseURL == "" {
		dir, err := os.MkdirTemp("", "streamworker-demo-")
		if err != nil {
			return nil, nil, err
		}
		lite, err := users.OpenSQLite(ctx, filepath.Join(dir, "users.db"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		fmt.Fprintln(stdout, "demo: users are stored in an embedded SQLite (throwaway); set DATABASE_URL for PostgreSQL")
		return lite, func() { lite.Close(); os.RemoveAll(dir) }, nil
	}
	pg, err := openPostgres(ctx, databaseURL)
	if err != nil {
		return nil, nil, err
	}
	s := users.NewPostgres(pg, "streamworker_demo")
	if err := s.Migrate(ctx); err != nil {
		pg.Close()
		return nil, nil, err
	}
	fmt.Fprintf(stdout, "demo: users are stored in PostgreSQL at %s (schema streamworker_demo)\n", config.Redact(databaseURL))
	return s, pg.Close, nil
}

// demoSubscribe starts the subscribers a live view would have, one on
// rank.changed and one on every user's notifications, keeping what they
// receive as samples until ctx ends; the returned function waits for them
// to stop.
func demoSubscribe(ctx context.Context, client redis.UniversalClient, logger *slog.Logger, samples *demoSamples) (func(), error) {
	subsReady := make(chan struct{}, 2)
	subsDone := make(chan struct{}, 2)
	nt := notify.New(client, &notify.Options{Logger: logger, OnSubscribe: func([]string, bool) { subsReady <- struct{}{} }})
	go func() {
		defer func() { subsDone <- struct{}{} }()
		_ = nt.Subscribe(ctx, notify.JSON(func(_ context.Context, _ *notify.Notification, ev scores.RankChanged) error {
			samples.add(&samples.rank, ev)
			return nil
		}), "rank.changed")
	}()
	go func() {
		defer func() { subsDone <- struct{}{} }()
		_ = nt.PSubscribe(ctx, notify.JSON(func(_ context.Context, m *notify.Notification, ev notifications.Request) error {
			samples.add(&samples.notes, fmt.Sprintf("%s <- %q", m.Channel, ev.Title))
			return nil
		}), "notifications:*")
	}()
	wait := func() { <-subsDone; <-subsDone }
	for range 2 {
		select {
		case <-subsReady:
		case <-time.After(10 * time.Second):
			return wait, errors.New("demo: subscribers not ready in 10s")
		}
	}
	return wait, nil
}

// demoFeed publishes the events in batches of 100, then one event without
// a type, which must end in the dead-letter stream.
func demoFeed(ctx context.Context, client redis.UniversalClient, events []producer.Event) error {
	p := producer.New(client, producer.Options{})
	for i := 0; i < len(events); i += 100 {
		if _, err := p.PublishBatch(ctx, demoStream, events[i:min(i+100, len(events))]); err != nil {
			return fmt.Errorf("feeding events: %w", err)
		}
	}
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: demoStream, Values: []string{"data", `{"note":"no type"}`}}).Err(); err != nil {
		return fmt.Errorf("feeding events: %w", err)
	}
	return nil
}

// demoWait polls the runtime's metrics until every event has a final
// outcome, for at most a minute, or until the runtime stops on its own.
func demoWait(reg prometheus.Gatherer, want map[string]int, done <-chan error, cancel func()) (map[string]outcomeCount, error) {
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got map[string]outcomeCount
	for {
		select {
		case <-tick.C:
			if got = countOutcomes(reg); finished(got, want) {
				return got, nil
			}
		case <-deadline:
			cancel()
			return nil, errors.Join(fmt.Errorf("demo did not finish in 60s: got %v, want %v final outcomes", got, want), <-done)
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("worker stopped early: %w", err)
		}
	}
}

// printOutcomes writes the table of what became of each type.
func printOutcomes(w io.Writer, got map[string]outcomeCount) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
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
