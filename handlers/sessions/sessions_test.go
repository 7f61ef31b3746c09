package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/sessions"
	"github.com/streamworker/streamworker/worker"
)

func TestSessionTouchedUpdatesAndSlidesTheTTL(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	s := sessions.New(h.Redis, &sessions.Options{Prefix: h.Prefix, IdleTimeout: 10 * time.Minute, Logger: h.Logger})
	mux := worker.NewMux()
	s.Register(mux)
	h.Start(mux)
	ctx := context.Background()
	key := h.Prefix + "session:s1"
	if err := s.Store().Save(ctx, "s1", map[string]any{"user": "ada", "page": "/"}); err != nil {
		t.Fatal(err)
	}

	for _, touch := range []sessions.Touch{
		{Session: "s1", Fields: map[string]string{"page": "/cart"}},
		{Session: "s1"}, // only slides
	} {
		h.Redis.PExpire(ctx, key, 2*time.Second) // as if the session had idled
		h.Acked(h.Send(sessions.Type, touch))
		if ttl := h.Redis.PTTL(ctx, key).Val(); ttl < 9*time.Minute {
			t.Errorf("TTL after %+v = %v, want the idle timeout slid back to ~10m", touch, ttl)
		}
	}
	if got, _ := s.Store().GetAll(ctx, "s1"); got["page"] != "/cart" || got["user"] != "ada" {
		t.Errorf("session = %v, want page updated and user kept", got)
	}

	// A touch of a session that is gone is acknowledged and does not bring
	// it back.
	h.Acked(h.Send(sessions.Type, sessions.Touch{Session: "gone", Fields: map[string]string{"page": "/"}}))
	if n := h.Redis.Exists(ctx, h.Prefix+"session:gone").Val(); n != 0 || s.Gone() != 1 {
		t.Errorf("gone session exists=%d, gone count=%d; want 0 and 1", n, s.Gone())
	}
	// Failure path: bad touches are dead-lettered, not retried.
	h.DeadLettered(h.Send(sessions.Type, `{"fields":{"a":"b"}}`))
	r := h.DeadLettered(h.Send(sessions.Type, sessions.Touch{Session: "s1", Fields: map[string]string{"_deadline": "0"}}))
	if r.Retries != 0 {
		t.Errorf("reserved field retried %d times", r.Retries)
	}
}
