package points_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/points"
	"github.com/streamworker/streamworker/worker"
)

func start(t *testing.T, concurrency int) (*handlertest.Harness, *points.Ledger) {
	h := handlertest.New(t)
	h.Config.Concurrency = concurrency
	l := points.New(h.Redis, &points.Options{Prefix: h.Prefix})
	mux := worker.NewMux()
	l.Register(mux)
	h.Start(mux)
	return h, l
}

func balance(t *testing.T, l *points.Ledger, user string) int64 {
	t.Helper()
	n, err := l.Balance(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTransferMovesPointsOnce(t *testing.T) {
	t.Parallel()
	h, l := start(t, 4)
	ctx := context.Background()
	if err := l.Grant(ctx, "alice", 100); err != nil {
		t.Fatal(err)
	}
	h.Acked(h.Send(points.Type, points.Transfer{From: "alice", To: "bob", Amount: 30}, "id", "tr-1"))
	// The same transfer delivered again (a producer retry) moves nothing.
	h.Acked(h.Send(points.Type, points.Transfer{From: "alice", To: "bob", Amount: 30}, "id", "tr-1"))
	if a, b := balance(t, l, "alice"), balance(t, l, "bob"); a != 70 || b != 30 {
		t.Errorf("balances alice=%d bob=%d, want 70 and 30", a, b)
	}
}

func TestInsufficientBalanceIsDeadLettered(t *testing.T) {
	t.Parallel()
	h, l := start(t, 4)
	if err := l.Grant(context.Background(), "alice", 10); err != nil {
		t.Fatal(err)
	}
	r := h.DeadLettered(h.Send(points.Type, points.Transfer{From: "alice", To: "bob", Amount: 11}))
	if r.Calls != 1 || r.Retries != 0 {
		t.Errorf("calls=%d retries=%d, want one call and no retry for a permanent refusal", r.Calls, r.Retries)
	}
	if e, _ := r.DeadLetter["error"].(string); !strings.Contains(e, "insufficient balance") {
		t.Errorf("dead letter error = %q, want insufficient balance", e)
	}
	if a, b := balance(t, l, "alice"), balance(t, l, "bob"); a != 10 || b != 0 {
		t.Errorf("balances alice=%d bob=%d, want 10 and 0: a refused transfer writes nothing", a, b)
	}
	for _, bad := range []string{`{"from":"a","to":"a","amount":1}`, `{"from":"a","to":"b","amount":-1}`, `not json`} {
		h.DeadLettered(h.Send(points.Type, bad))
	}
}

func TestConcurrentTransfersConserveTheTotal(t *testing.T) {
	t.Parallel()
	h, l := start(t, 16)
	ctx := context.Background()
	users := []string{"u0", "u1", "u2", "u3", "u4"}
	for _, u := range users {
		if err := l.Grant(ctx, u, 100); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for range 200 {
		from := rand.N(len(users))
		to := (from + 1 + rand.N(len(users)-1)) % len(users)
		ids = append(ids, h.Send(points.Type, points.Transfer{From: users[from], To: users[to], Amount: 1 + rand.Int64N(60)}))
	}
	var acked, dead int
	for _, id := range ids {
		switch h.Wait(id).Outcome {
		case handlertest.Acked:
			acked++
		case handlertest.DeadLettered:
			dead++
		}
	}
	var total int64
	for _, u := range users {
		b := balance(t, l, u)
		if b < 0 {
			t.Errorf("%s has %d: overdrawn", u, b)
		}
		total += b
	}
	if total != 500 {
		t.Errorf("total = %d, want 500 conserved", total)
	}
	if acked == 0 {
		t.Errorf("no transfer succeeded")
	}
	t.Logf("acked %d, refused %d", acked, dead)
}

// failingAfter is middleware standing for a step after the award that
// fails: for user "flaky" on the first two attempts, for user "doomed"
// always. The plugin has added its effect by then.
func failingAfter(next worker.Handler) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		if err := next.HandleMessage(ctx, m); err != nil {
			return err
		}
		if m.Effects().Len() != 1 {
			return worker.Permanent(errors.New("the award added no effect"))
		}
		switch data := string(m.Data); {
		case strings.Contains(data, `"doomed"`), strings.Contains(data, `"flaky"`) && m.Attempt < 3:
			return fmt.Errorf("a later step failed on attempt %d", m.Attempt)
		}
		return nil
	})
}

func startAwards(t *testing.T) (*handlertest.Harness, *points.Ledger) {
	h := handlertest.New(t)
	l := points.New(h.Redis, &points.Options{Prefix: h.Prefix})
	plugin := worker.NewMux()
	l.Register(plugin)
	mux := worker.NewMux() // the harness records what failingAfter returns
	mux.Handle(points.AwardedType, failingAfter(plugin))
	h.Start(mux)
	return h, l
}

func awarded(t *testing.T, h *handlertest.Harness, l *points.Ledger, user string) int64 {
	t.Helper()
	n, err := l.Awarded(context.Background(), h.Stream, user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAwardCommittedWithTheAcknowledgement(t *testing.T) {
	t.Parallel()
	h, l := startAwards(t)
	h.Acked(h.Send(points.AwardedType, points.Award{User: "alice", Amount: 5}))
	h.Acked(h.Send(points.AwardedType, points.Award{User: "alice", Amount: 7}))
	if n := awarded(t, h, l, "alice"); n != 12 {
		t.Errorf("alice was awarded %d, want 12", n)
	}
	if k := points.AwardsKey(h.Stream); k != "{"+h.Stream+"}:points:awarded" {
		t.Errorf("AwardsKey = %q, want the stream's slot", k)
	}
	// Acknowledged in the same script: nothing is left pending.
	h.Eventually("no entry pending", func() bool {
		p, err := h.Redis.XPending(context.Background(), h.Stream, "handlertest").Result()
		return err == nil && p.Count == 0
	})
}

func TestAwardNotCommittedWhenTheHandlerFails(t *testing.T) {
	t.Parallel()
	h, l := startAwards(t)
	// Two failed attempts added the effect and returned an error: neither
	// committed it; the third did, once.
	r := h.Acked(h.Send(points.AwardedType, points.Award{User: "flaky", Amount: 5}))
	if r.Calls != 3 || r.Retries != 2 {
		t.Errorf("calls=%d retries=%d, want 3 and 2", r.Calls, r.Retries)
	}
	if n := awarded(t, h, l, "flaky"); n != 5 {
		t.Errorf("flaky was awarded %d after two failed attempts and one success, want 5", n)
	}
	// Failing on every attempt: dead-lettered, nothing awarded.
	h.DeadLettered(h.Send(points.AwardedType, points.Award{User: "doomed", Amount: 5}))
	if n := awarded(t, h, l, "doomed"); n != 0 {
		t.Errorf("doomed was awarded %d by a dead-lettered message, want 0", n)
	}
}

func TestBadAwardIsDeadLettered(t *testing.T) {
	t.Parallel()
	h, l := startAwards(t)
	for _, c := range []struct {
		data any
		want string
	}{
		{`{"user":`, "decoding award"},
		{points.Award{Amount: 5}, "user is required"},
		{points.Award{User: "bob", Amount: 0}, "amount 0 is not positive"},
		{points.Award{User: "bob", Amount: -3}, "amount -3 is not positive"},
		{points.Award{User: "bob", Amount: points.MaxAward + 1}, "amount 1000000001 is over the most one award may add, 1000000000"},
		{`{"user":"bob","amount":9223372036854775807}`, "amount 9223372036854775807 is over the most"},
	} {
		r := h.DeadLettered(h.Send(points.AwardedType, c.data))
		if e, _ := r.DeadLetter["error"].(string); !strings.Contains(e, c.want) || r.Calls != 1 {
			t.Errorf("award %v: dead letter error %q after %d calls, want %q after one", c.data, e, r.Calls, c.want)
		}
	}
	if n := awarded(t, h, l, "bob"); n != 0 {
		t.Errorf("bob was awarded %d by refused awards, want 0", n)
	}
}
