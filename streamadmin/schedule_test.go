package streamadmin

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// The real runtime registers its schedule (WORKER_SCHEDULE and WithSchedule)
// in Redis; Schedule lists it with the last tick published and the next.
func TestScheduleListsWhatTheRuntimeRegistered(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "jobs"
	cfg := config.Default()
	cfg.RedisURL, cfg.Streams, cfg.Group, cfg.Consumer = srv.URL(), []string{stream}, "g", "c1"
	cfg.Block, cfg.HTTPAddr = 50*time.Millisecond, "off"
	cfg.Schedule, cfg.ScheduleTZ, cfg.ScheduleMissed = "report.requested 0 3 * * *", "Europe/Berlin", "skip"
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(rctx, cfg, worker.NewMux(), worker.WithRedis(c), worker.WithSchedule("cleanup.run", "@every 1s"),
			worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run = %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !c.HExists(ctx, wire.ScheduleKey(stream), wire.ScheduleTickField("cleanup.run @every 1s")).Val() {
		if time.Now().After(deadline) {
			t.Fatal("no tick of cleanup.run published in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	now := time.Now()
	got, err := New(c).Schedule(ctx, stream, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Schedule = %+v, want 2 entries", got)
	}
	cleanup, report := got[0], got[1]
	if cleanup.Type != "cleanup.run" || cleanup.Spec != "@every 1s" || cleanup.TZ != "Europe/Berlin" || cleanup.Missed != "skip" ||
		cleanup.Last.IsZero() || cleanup.Last.After(now) || !cleanup.Next.After(now) || cleanup.Next.Sub(now) > time.Second || cleanup.Problem != "" {
		t.Errorf("cleanup entry = %+v", cleanup)
	}
	if h, m, _ := report.Next.Clock(); report.Type != "report.requested" || report.Spec != "0 3 * * *" || !report.Last.IsZero() ||
		h != 3 || m != 0 || report.Next.Location().String() != "Europe/Berlin" || report.Next.Sub(now) > 25*time.Hour {
		t.Errorf("report entry = %+v, want its next tick at 03:00 Berlin time within a day, none published", report)
	}
	if none, err := New(c).Schedule(ctx, stream+"-other", 4, now); err != nil || len(none) != 0 {
		t.Errorf("Schedule of a stream without one = %v, %v", none, err)
	}
}
