package txn_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/blocks/txn"
	"github.com/streamworker/streamworker/internal/testredis"
)

var errInsufficient = errors.New("insufficient balance")

// transfer moves amount points from one account to another, refusing to
// overdraw. Only from is watched: the decision reads only its balance, and
// INCRBY on to is atomic on its own.
func transfer(ctx context.Context, r *txn.Runner, from, to string, amount int64) error {
	return r.Run(ctx, func(tx *redis.Tx) error {
		balance, err := tx.Get(ctx, from).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if balance < amount {
			return txn.Refuse(fmt.Errorf("%w: %s has %d, needs %d", errInsufficient, from, balance, amount))
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.DecrBy(ctx, from, amount)
			p.IncrBy(ctx, to, amount)
			return nil
		})
		return err
	}, from)
}

func accounts(p string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = p + keys.MustJoin("points", keys.Tag("game"), fmt.Sprint("player", i))
	}
	return out
}

// 100 concurrent transfers among 5 accounts conserve the total exactly, and
// each account ends with exactly its opening balance plus the transfers
// that committed: none applied twice, none lost, none overdrawn.
func TestConcurrentTransfersConserve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"SingleNode", func(t *testing.T) redis.UniversalClient { return testredis.Shared(t).Client(t) }},
		{"Cluster", func(t *testing.T) redis.UniversalClient { return startCluster(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := tc.client(t)
			ctx := t.Context()
			accts := accounts(testredis.Prefix(t), 5)
			const opening, n = 1000, 100
			for _, a := range accts {
				if err := rdb.Set(ctx, a, opening, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			r := txn.New(rdb, nil)

			var (
				mu                 sync.Mutex
				want               = map[string]int64{}
				refused, exhausted atomic.Int32
				wg                 sync.WaitGroup
			)
			for _, a := range accts {
				want[a] = opening
			}
			for i := range n {
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				from := accts[rng.IntN(len(accts))]
				to := accts[rng.IntN(len(accts))]
				for to == from {
					to = accts[rng.IntN(len(accts))]
				}
				amount := 1 + rng.Int64N(600)
				wg.Go(func() {
					err := transfer(ctx, r, from, to, amount)
					switch {
					case err == nil:
						mu.Lock()
						want[from] -= amount
						want[to] += amount
						mu.Unlock()
					case errors.Is(err, txn.ErrRefused) && errors.Is(err, errInsufficient):
						refused.Add(1)
					case errors.Is(err, txn.ErrTooManyConflicts):
						exhausted.Add(1)
					default:
						t.Errorf("transfer %d: %v", i, err)
					}
				})
			}
			wg.Wait()

			var total int64
			for _, a := range accts {
				got, err := rdb.Get(ctx, a).Int64()
				if err != nil {
					t.Fatal(err)
				}
				if got != want[a] || got < 0 {
					t.Errorf("%s = %d; want %d from the committed transfers", a, got, want[a])
				}
				total += got
			}
			if total != opening*int64(len(accts)) {
				t.Fatalf("total = %d; want %d", total, opening*len(accts))
			}
			t.Logf("%d committed, %d refused for insufficient balance, %d out of attempts",
				n-int(refused.Load())-int(exhausted.Load()), refused.Load(), exhausted.Load())
		})
	}
}

func TestRefusalIsNotRetried(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ctx := t.Context()
	a := accounts(testredis.Prefix(t), 2)
	rdb.Set(ctx, a[0], 10, 0)
	calls := 0
	r := txn.New(rdb, nil)
	err := r.Run(ctx, func(tx *redis.Tx) error {
		calls++
		return txn.Refuse(errInsufficient)
	}, a[0])
	if !errors.Is(err, txn.ErrRefused) || !errors.Is(err, errInsufficient) || errors.Is(err, txn.ErrTooManyConflicts) {
		t.Fatalf("Run = %v; want ErrRefused and the reason", err)
	}
	if calls != 1 {
		t.Fatalf("fn ran %d times; want 1", calls)
	}
	if err.Error() != "txn: refused: insufficient balance" {
		t.Errorf("error text = %q", err)
	}
	if err := transfer(ctx, r, a[0], a[1], 11); !errors.Is(err, errInsufficient) {
		t.Fatalf("overdraft = %v", err)
	}
	if got := rdb.Get(ctx, a[0]).Val(); got != "10" {
		t.Fatalf("balance after a refused transfer = %s; want 10", got)
	}
	if !errors.Is(txn.Refuse(nil), txn.ErrRefused) {
		t.Error("Refuse(nil) does not match ErrRefused")
	}
}

func TestOtherErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	boom := errors.New("boom")
	calls := 0
	err := txn.New(rdb, nil).Run(t.Context(), func(*redis.Tx) error { calls++; return boom }, testredis.Prefix(t)+"k")
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Run = %v after %d calls; want boom after 1", err, calls)
	}
}

// A key changed by another client between WATCH and EXEC on every attempt:
// Run gives up after MaxAttempts with ErrTooManyConflicts, writing nothing.
func TestTooManyConflicts(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	rdb, other := srv.Client(t), srv.Client(t)
	ctx := t.Context()
	key := testredis.Prefix(t) + "counter"
	calls := 0
	r := txn.New(rdb, &txn.Options{MaxAttempts: 3})
	err := r.Run(ctx, func(tx *redis.Tx) error {
		calls++
		if err := other.Incr(ctx, key).Err(); err != nil { // the rival's write
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, "mine", 0)
			return nil
		})
		return err
	}, key)
	if !errors.Is(err, txn.ErrTooManyConflicts) || errors.Is(err, txn.ErrRefused) {
		t.Fatalf("Run = %v; want ErrTooManyConflicts", err)
	}
	if calls != 3 {
		t.Fatalf("fn ran %d times; want 3", calls)
	}
	if got := rdb.Get(ctx, key).Val(); got != "3" {
		t.Fatalf("key = %q; want the rival's 3", got)
	}
}

// A context that ends while Run waits out its backoff after a conflict ends
// the wait: Run returns the context's error, not after the hour. The rival
// write and the transaction run under the test's own context, so that the
// conflict happens whatever the machine's load; the context given to Run
// ends as the transaction is tried, so Run finds it ended at its backoff.
// (With a 50 ms deadline for all of it, a rival write that took longer to
// dial failed unseen, and the transaction went through.)
func TestContextEndsBackoff(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	rdb, other := srv.Client(t), srv.Client(t)
	key := testredis.Prefix(t) + "counter"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := txn.New(rdb, &txn.Options{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	calls := 0
	err := r.Run(ctx, func(tx *redis.Tx) error {
		calls++
		if err := other.Incr(t.Context(), key).Err(); err != nil {
			t.Fatalf("the rival's INCR: %v", err)
		}
		cancel()
		_, err := tx.TxPipelined(t.Context(), func(p redis.Pipeliner) error { p.Incr(t.Context(), key); return nil })
		return err
	}, key)
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Run = %v after %d tries; want context.Canceled after 1", err, calls)
	}
	if got := rdb.Get(t.Context(), key).Val(); got != "1" {
		t.Fatalf("key = %q; want the rival's 1 alone", got)
	}
}

func TestCrossSlotRefused(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	p := testredis.Prefix(t)
	called := false
	err := txn.New(rdb, nil).Run(t.Context(), func(*redis.Tx) error { called = true; return nil }, p+"points:alice", p+"points:bob")
	if !errors.Is(err, keys.ErrCrossSlot) || called {
		t.Fatalf("Run = %v (fn ran: %v); want ErrCrossSlot before running", err, called)
	}
	if err := txn.New(rdb, nil).Run(t.Context(), func(*redis.Tx) error { return nil }); err == nil {
		t.Fatal("Run without keys: no error")
	}
}

func BenchmarkTransfer(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	ctx := b.Context()
	a := accounts(testredis.Prefix(b), 2)
	rdb.Set(ctx, a[0], 1<<40, 0)
	r := txn.New(rdb, nil)
	for b.Loop() {
		if err := transfer(ctx, r, a[0], a[1], 1); err != nil {
			b.Fatal(err)
		}
	}
}
