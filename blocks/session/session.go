// Package session owns user sessions stored as Redis hashes: saved in one
// round trip with their expiry, read one field or all, updated in part,
// kept alive by a sliding idle timeout refreshed on every access in the
// same round trip, and ended by an absolute maximum lifetime however
// active they are.
//
// The traps it avoids: HSET and EXPIRE sent apart, so a crash between them
// leaves a session that never expires; an update that recreates a session
// which just expired or was deleted (HSET creates the key) as a partial
// session without an expiry; a sliding timeout with no cap, so a stolen
// session used now and then lives for ever; a missing session read as an
// empty one (HGETALL answers an empty hash); guessable session IDs.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeadlineField is the hash field that holds a session's absolute
// deadline (Unix milliseconds). It is written by Save, read on every
// access, and never returned by GetAll; values may not use it.
const DeadlineField = "_deadline"

var (
	// ErrNotFound is returned for a session that does not exist: never
	// saved, deleted, idle too long or past its maximum lifetime.
	ErrNotFound = errors.New("session: not found")
	// ErrNoField is returned by Get for a field the session does not have.
	ErrNoField = errors.New("session: no such field")
	// ErrReservedField is returned for values that set DeadlineField.
	ErrReservedField = errors.New("session: field " + DeadlineField + " is reserved")
)

// Options configure a Store.
type Options struct {
	// Prefix is prepended to a session ID to make its key.
	// Default: "session:"
	Prefix string
	// IdleTimeout ends a session not accessed for this long. Every read,
	// update and touch starts it again (a sliding expiry). It is capped at
	// MaxLifetime. Default: 30m
	IdleTimeout time.Duration
	// MaxLifetime ends a session this long after it was saved, however
	// often it is used. Default: 24h
	MaxLifetime time.Duration
}

// Store keeps sessions in Redis. It is safe for concurrent use.
//
// Deadlines are computed with the local clock; clocks of processes sharing
// a Store's keys should agree to well within the timeouts (NTP does).
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	idle   time.Duration
	max    time.Duration
}

// New returns a Store on rdb. opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Store {
	var o Options
	if opt != nil {
		o = *opt
	}
	if o.Prefix == "" {
		o.Prefix = "session:"
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 24 * time.Hour
	}
	return &Store{rdb: rdb, prefix: o.Prefix, idle: min(o.IdleTimeout, o.MaxLifetime), max: o.MaxLifetime}
}

// NewID returns a new session ID: 128 random bits, hex encoded, so an ID
// cannot be guessed from another.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// Save creates the session id with values, replacing any session of that
// ID, and starts its idle timeout and maximum lifetime. The hash is written
// by one HSET and given its expiry in the same MULTI transaction, so it
// never exists without one. Values are formatted as go-redis formats HSET
// arguments.
func (s *Store) Save(ctx context.Context, id string, values map[string]any) error {
	if _, ok := values[DeadlineField]; ok {
		return ErrReservedField
	}
	key := s.key(id)
	deadline := time.Now().Add(s.max).UnixMilli()
	args := make([]any, 0, 2*len(values)+2)
	for f, v := range values {
		args = append(args, f, v)
	}
	args = append(args, DeadlineField, deadline)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, args...)
		p.PExpire(ctx, key, s.idle)
		return nil
	})
	if err != nil {
		return fmt.Errorf("session: saving %q: %w", id, err)
	}
	return nil
}

// Each script touches one key, the session's hash, so it runs on any
// Redis Cluster node that owns the session.
//
// updateScript sets fields of a session that exists, and refreshes its
// expiry to the idle timeout or the time left before its deadline,
// whichever is shorter. A session past its deadline is deleted instead.
// Returns 1 when updated, 0 when there is no such session.
//
// KEYS[1] -> the session hash
// ARGV[1] -> now, Unix ms (the clock deadlines are written with)
// ARGV[2] -> idle timeout, ms
// ARGV[3] -> the deadline field's name
// ARGV[4..] -> field, value, field, value, ...
var updateScript = redis.NewScript(`
local deadline = tonumber(redis.call('HGET', KEYS[1], ARGV[3]))
if not deadline then return 0 end
local left = deadline - tonumber(ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
-- In chunks: unpack is bounded by Lua's C stack (about 8000 values).
for i = 4, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), left))
return 1
`)

// Update sets values in the session id, leaving its other fields alone,
// and refreshes its idle timeout. It returns ErrNotFound, and writes
// nothing, when the session does not exist: it never brings back a session
// that expired or was deleted.
func (s *Store) Update(ctx context.Context, id string, values map[string]any) error {
	if _, ok := values[DeadlineField]; ok {
		return ErrReservedField
	}
	args := make([]any, 0, 2*len(values)+3)
	args = append(args, time.Now().UnixMilli(), s.idle.Milliseconds(), DeadlineField)
	for f, v := range values {
		args = append(args, f, v)
	}
	n, err := updateScript.Run(ctx, s.rdb, []string{s.key(id)}, args...).Int()
	if err != nil {
		return fmt.Errorf("session: updating %q: %w", id, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Get returns one field of the session id and refreshes its idle timeout,
// in one round trip. It returns ErrNotFound when the session does not
// exist and ErrNoField when the field does not.
func (s *Store) Get(ctx context.Context, id, field string) (string, error) {
	key := s.key(id)
	var get *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HMGet(ctx, key, DeadlineField, field)
		p.PExpire(ctx, key, s.idle)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("session: reading %q: %w", id, err)
	}
	vals := get.Val()
	if err := s.settle(ctx, key, vals[0]); err != nil {
		return "", err
	}
	v, ok := vals[1].(string)
	if !ok || field == DeadlineField {
		return "", ErrNoField
	}
	return v, nil
}

// GetAll returns every field of the session id and refreshes its idle
// timeout, in one round trip. It returns ErrNotFound when the session does
// not exist.
func (s *Store) GetAll(ctx context.Context, id string) (map[string]string, error) {
	key := s.key(id)
	var get *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGetAll(ctx, key)
		p.PExpire(ctx, key, s.idle)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("session: reading %q: %w", id, err)
	}
	m := get.Val()
	d, ok := m[DeadlineField]
	if !ok {
		return nil, ErrNotFound
	}
	if err := s.settle(ctx, key, d); err != nil {
		return nil, err
	}
	delete(m, DeadlineField)
	return m, nil
}

// Touch refreshes the idle timeout of the session id without reading it,
// in one round trip. It returns ErrNotFound when the session does not
// exist.
func (s *Store) Touch(ctx context.Context, id string) error {
	key := s.key(id)
	var get *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGet(ctx, key, DeadlineField)
		p.PExpire(ctx, key, s.idle)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("session: touching %q: %w", id, err)
	}
	if get.Err() != nil {
		return ErrNotFound
	}
	return s.settle(ctx, key, get.Val())
}

// Delete ends the session id. Deleting a session that does not exist is
// not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.rdb.Del(ctx, s.key(id)).Err(); err != nil {
		return fmt.Errorf("session: deleting %q: %w", id, err)
	}
	return nil
}

// capScript shortens a session's expiry to the time left before its
// deadline, or deletes it when none is left, if the session still has the
// deadline the caller read.
//
// KEYS[1] -> the session hash
// ARGV[1] -> the deadline field's name
// ARGV[2] -> the deadline the caller read
// ARGV[3] -> ms left before it; 0 deletes
var capScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`)

// settle enforces the deadline a read returned. The read's PEXPIRE set the
// full idle timeout; when the deadline is nearer than that, the expiry is
// cut to it, and a session past its deadline is deleted. Both happen only in
// the last IdleTimeout of a session's life, and only if the session still
// has the deadline that was read (a concurrent Save made a new one).
func (s *Store) settle(ctx context.Context, key string, deadline any) error {
	str, ok := deadline.(string)
	if !ok {
		return ErrNotFound
	}
	d, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return fmt.Errorf("session: %s has a malformed %s %q", key, DeadlineField, str)
	}
	left := time.Until(time.UnixMilli(d))
	if left >= s.idle {
		return nil
	}
	ms := max(left.Milliseconds(), 0)
	if err := capScript.Run(ctx, s.rdb, []string{key}, DeadlineField, str, ms).Err(); err != nil {
		return fmt.Errorf("session: capping the expiry of %s: %w", key, err)
	}
	if ms == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *Store) key(id string) string { return s.prefix + id }
