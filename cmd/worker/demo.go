package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/producer"
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

	client, err := producer.NewClient(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer client.Close()
	// A demo against a real Redis starts from a clean stream.
	if err := client.Del(ctx, demoStream, worker.DelayedKey(demoStream), worker.DeadLetterKey(demoStream)).Err(); err != nil {
		return fmt.Errorf("connecting to redis: %w", err)
	}

	events, want := demoEvents(n)
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
	want["(none)"] = outcomeCount{dead: 1}
	fmt.Fprintf(stdout, "demo: fed %d events to %q; processing...\n", len(events)+1, demoStream)

	mux := worker.NewMux()
	registerExamples(mux)
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.Run(runCtx, cfg, mux, worker.WithRegistry(reg), worker.WithLogger(logger)) }()

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
			return errors.Join(fmt.Errorf("demo did not finish in 60s: got %v, want %v", got, want), <-done)
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
	fmt.Fprintln(tw, "type\tprocessed\tretried\tdead-lettered\t")
	types := make([]string, 0, len(got))
	for t := range got {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		c := got[t]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", t, c.acked, c.retried, c.dead)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "demo: every event accounted for in %s\n", took.Round(time.Millisecond))
	dead, err := client.XRangeN(ctx, worker.DeadLetterKey(demoStream), "-", "+", 2).Result()
	if err == nil {
		for _, e := range dead {
			fmt.Fprintf(stdout, "  dead letter %s: type=%q error=%q attempts=%v\n", e.ID, e.Values["type"], e.Values["error"], e.Values["attempts"])
		}
	}
	return nil
}

type outcomeCount struct{ acked, retried, dead int }

// demoEvents returns a mix of events and how each type should end.
func demoEvents(n int) ([]producer.Event, map[string]outcomeCount) {
	want := map[string]outcomeCount{}
	var events []producer.Event
	for i := range n {
		var e producer.Event
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			e = producer.Event{Type: "order.created", Data: fmt.Appendf(nil, `{"order":%d,"total":%d}`, i, 10+i%90)}
			c := want[e.Type]
			c.acked++
			want[e.Type] = c
		case 6, 7:
			e = producer.Event{Type: "payment.charge", Data: fmt.Appendf(nil, `{"order":%d}`, i)}
			c := want[e.Type]
			c.acked++
			c.retried += 2
			want[e.Type] = c
		case 8:
			e = producer.Event{Type: "email.send", Data: fmt.Appendf(nil, `{"to":"user%d@example.com"}`, i)}
			c := want[e.Type]
			c.acked++
			want[e.Type] = c
		case 9:
			e = producer.Event{Type: "email.send", Data: fmt.Appendf(nil, `{"to":"user%d.example.com"}`, i)}
			c := want[e.Type]
			c.dead++
			want[e.Type] = c
		}
		e.ID = fmt.Sprintf("demo-%d", i)
		events = append(events, e)
	}
	return events, want
}

// countOutcomes reads streamworker_messages_total by type.
func countOutcomes(g prometheus.Gatherer) map[string]outcomeCount {
	out := map[string]outcomeCount{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "streamworker_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			typ, outcome := label(m, "type"), label(m, "outcome")
			if typ == "" {
				typ = "(none)"
			}
			c := out[typ]
			v := int(m.GetCounter().GetValue())
			switch outcome {
			case worker.OutcomeAcked:
				c.acked += v
			case worker.OutcomeRetried:
				c.retried += v
			case worker.OutcomeDead:
				c.dead += v
			}
			out[typ] = c
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func finished(got, want map[string]outcomeCount) bool {
	for t, w := range want {
		if got[t] != w {
			return false
		}
	}
	return true
}
