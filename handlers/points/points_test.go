package points_test

import (
	"context"
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
