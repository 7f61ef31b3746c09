package txn_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/blocks/txn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// A transfer reads the payer's balance, refuses an overdraft, and moves the
// points in MULTI/EXEC; Run retries it if another client changed the
// balance in between. Both accounts share a hash tag, so the transaction
// also runs on Redis Cluster.
func ExampleRunner_Run() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	ctx := context.Background()
	game := "example-" + testredis.RandomID()
	alice := keys.MustJoin("points", keys.Tag(game), "alice")
	bob := keys.MustJoin("points", keys.Tag(game), "bob")
	rdb.Set(ctx, alice, 100, 0)

	errInsufficient := errors.New("insufficient balance")
	transfer := func(from, to string, amount int64) error {
		return txn.New(rdb, nil).Run(ctx, func(tx *redis.Tx) error {
			balance, err := tx.Get(ctx, from).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if balance < amount {
				return txn.Refuse(errInsufficient)
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.DecrBy(ctx, from, amount)
				p.IncrBy(ctx, to, amount)
				return nil
			})
			return err
		}, from)
	}

	fmt.Println(transfer(alice, bob, 70))
	err := transfer(alice, bob, 70)
	fmt.Println(err)
	fmt.Println("refused:", errors.Is(err, txn.ErrRefused), "retry later:", errors.Is(err, txn.ErrTooManyConflicts))
	fmt.Println(rdb.Get(ctx, alice).Val(), rdb.Get(ctx, bob).Val())
	// Output:
	// <nil>
	// txn: refused: insufficient balance
	// refused: true retry later: false
	// 30 70
}
