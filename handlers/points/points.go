// Package points is the built-in points plugin. points.transfer moves points
// between two users' balances with an optimistic transaction (package txn),
// refuses an overdraft for good (the message is dead-lettered, not retried)
// and applies each transfer once even when the message is delivered again.
// points.awarded adds points to a user's tally of awards on the stream,
// committed with the message's acknowledgement (worker.Message.Effects):
// exactly once, with no mark to keep.
//
// Transfer keys, all under one hash tag so a transfer is one MULTI on Redis
// Cluster: <prefix>points:{balances}:<user> holds a balance (an integer
// string) and <prefix>points:{balances}:applied:<transfer> marks a transfer
// done, for AppliedTTL. Awards are the hash {<stream>}:points:awarded (user
// -> points) in the stream's hash slot (AwardsKey), beside the stream and
// not under the prefix: the effects commit with the acknowledgement in one
// script, which on a Cluster touches one slot.
package points

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/blocks/txn"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type of a transfer.
const Type = "points.transfer"

// AwardedType is the message type of an award.
const AwardedType = "points.awarded"

// ErrInsufficientBalance is the refusal of a transfer larger than the
// payer's balance.
var ErrInsufficientBalance = errors.New("insufficient balance")

// Transfer is the payload of a points.transfer message.
type Transfer struct {
	// ID names the transfer, so a redelivered message does not move the
	// points twice. Default: the producer's id field, else the message's
	// origin ID.
	ID     string `json:"id,omitempty"`
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
}

// Options configure a Ledger.
type Options struct {
	// Prefix is put in front of every key. Default: ""
	Prefix string
	// AppliedTTL is how long a transfer is remembered as applied; a
	// redelivery later than that would apply it again. Default: 24h
	AppliedTTL time.Duration
	// Txn tunes the optimistic transaction. Default: txn's defaults.
	Txn *txn.Options
}

// Ledger holds users' point balances in Redis.
type Ledger struct {
	rdb redis.UniversalClient
	txn *txn.Runner
	opt Options
}

// New returns a Ledger on rdb; opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Ledger {
	l := &Ledger{rdb: rdb}
	if opt != nil {
		l.opt = *opt
	}
	if l.opt.AppliedTTL <= 0 {
		l.opt.AppliedTTL = 24 * time.Hour
	}
	l.txn = txn.New(rdb, l.opt.Txn)
	return l
}

// Register registers the points.transfer and points.awarded handlers on
// mux.
func (l *Ledger) Register(mux *worker.Mux) {
	mux.HandleFunc(Type, l.handle)
	mux.HandleFunc(AwardedType, l.handleAward)
}

// MaxAward is the most points one award may add. A tally is a Redis
// integer, at most 2^63-1: an award that would pass it fails the commit on
// every delivery. Under this cap it takes billions of awards of the most
// to get there.
const MaxAward = 1_000_000_000

// Award is the payload of a points.awarded message.
type Award struct {
	User   string `json:"user"`
	Amount int64  `json:"amount"`
}

// handleAward commits the award with the message's acknowledgement: a
// redelivery (the worker killed before the commit, the entry reclaimed)
// finds nothing applied and applies it; one whose entry another consumer
// took over commits nothing. An award is a blind increment in the stream's
// slot, which is what effects are for; a transfer reads a balance first
// and touches keys of another slot, so it keeps its transaction and mark.
func (l *Ledger) handleAward(_ context.Context, m *worker.Message) error {
	var a Award
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return worker.Permanent(fmt.Errorf("decoding award: %w", err))
	}
	switch {
	case a.User == "":
		return worker.Permanent(fmt.Errorf("%w: user is required", errInvalid))
	case a.Amount <= 0:
		return worker.Permanent(fmt.Errorf("%w: amount %d is not positive", errInvalid, a.Amount))
	case a.Amount > MaxAward:
		return worker.Permanent(fmt.Errorf("%w: amount %d is over the most one award may add, %d", errInvalid, a.Amount, MaxAward))
	}
	fx := m.Effects()
	return fx.Do("HINCRBY", fx.Key(awardsName), a.User, a.Amount)
}

const awardsName = "points:awarded"

// AwardsKey is the hash of the awards made by the messages of stream: user
// -> points.
func AwardsKey(stream string) string {
	return (&worker.Message{Stream: stream}).Effects().Key(awardsName)
}

// Awarded returns the points awarded to user by the messages of stream; 0
// when none.
func (l *Ledger) Awarded(ctx context.Context, stream, user string) (int64, error) {
	n, err := l.rdb.HGet(ctx, AwardsKey(stream), user).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

func (l *Ledger) handle(ctx context.Context, m *worker.Message) error {
	var t Transfer
	if err := json.Unmarshal(m.Data, &t); err != nil {
		return worker.Permanent(fmt.Errorf("decoding transfer: %w", err))
	}
	if t.ID == "" {
		t.ID = m.IdempotencyKey
	}
	if t.ID == "" {
		t.ID = m.OriginID
	}
	err := l.Transfer(ctx, t)
	if errors.Is(err, txn.ErrRefused) || errors.Is(err, errInvalid) {
		return worker.Permanent(err) // retrying cannot make the balance suffice
	}
	return err // a conflict storm or Redis failing: retried with backoff
}

var errInvalid = errors.New("invalid transfer")

// Transfer moves t.Amount points from t.From to t.To, once per t.ID. It
// returns an error matching ErrInsufficientBalance and txn.ErrRefused, and
// writes nothing, when the payer has fewer points.
func (l *Ledger) Transfer(ctx context.Context, t Transfer) error {
	switch {
	case t.From == "" || t.To == "" || t.ID == "":
		return fmt.Errorf("%w: from, to and id are required", errInvalid)
	case t.From == t.To:
		return fmt.Errorf("%w: from and to are both %q", errInvalid, t.From)
	case t.Amount <= 0:
		return fmt.Errorf("%w: amount %d is not positive", errInvalid, t.Amount)
	}
	from, to := l.key(t.From), l.key(t.To)
	applied := l.key("applied", t.ID)
	return l.txn.Run(ctx, func(tx *redis.Tx) error {
		done, err := tx.Exists(ctx, applied).Result()
		if err != nil {
			return err
		}
		if done == 1 {
			return nil // a redelivery of a transfer already made
		}
		balance, err := tx.Get(ctx, from).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if balance < t.Amount {
			return txn.Refuse(fmt.Errorf("%w: %s has %d, transfer %s needs %d", ErrInsufficientBalance, t.From, balance, t.ID, t.Amount))
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.DecrBy(ctx, from, t.Amount)
			p.IncrBy(ctx, to, t.Amount)
			p.Set(ctx, applied, 1, l.opt.AppliedTTL)
			return nil
		})
		return err
	}, from, applied)
}

// Grant adds amount points to user's balance (a sign-up bonus, a purchase).
func (l *Ledger) Grant(ctx context.Context, user string, amount int64) error {
	return l.rdb.IncrBy(ctx, l.key(user), amount).Err()
}

// Balance returns user's balance; 0 for a user never seen.
func (l *Ledger) Balance(ctx context.Context, user string) (int64, error) {
	n, err := l.rdb.Get(ctx, l.key(user)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

func (l *Ledger) key(parts ...string) string {
	for i, p := range parts {
		parts[i] = keys.Escape(p)
	}
	return l.opt.Prefix + keys.MustJoin(append([]string{"points", keys.Tag("balances")}, parts...)...)
}
