// Package users is the built-in user.updated plugin: it writes the user to
// the database (the source of truth) first and then invalidates the cached
// profile, and serves reads (GetUser) cache-aside with stampede protection
// over the same store.
//
// Order matters: the write comes first, so a failed write leaves the cache
// alone and the message is retried; a failed invalidation does not undo the
// write (it has happened) — it is logged and counted, and the stale profile
// lasts at most CacheTTL. Deleting before writing would let a reader cache
// the old row again before the write lands.
//
// Keys: <prefix>user:{<id>}:profile holds the cached profile (package cache).
package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/cache"
	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type the plugin handles.
const Type = "user.updated"

// ErrNotFound is returned by a Store and by GetUser for a user that does
// not exist.
var ErrNotFound = errors.New("users: user not found")

// User is a user's profile, the payload of a user.updated message.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	// Version orders updates of one user: a store keeps the row with the
	// highest version, so an update delivered late does not overwrite a
	// newer one. Equal versions overwrite (a redelivery is harmless).
	Version int64 `json:"version"`
}

// Store is the source of truth for users. Postgres and SQLite implement it.
type Store interface {
	// UpsertUser writes u unless the stored row has a higher Version.
	UpsertUser(ctx context.Context, u User) error
	// GetUser returns the user id, or an error matching ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
}

// Options configure a Service.
type Options struct {
	// Prefix is put in front of every key. Default: ""
	Prefix string
	// CacheTTL is how long a profile stays cached. Default: 10m
	CacheTTL time.Duration
	// Cache tunes the cache; its Logger defaults to Logger.
	Cache *cache.Options
	// Logger receives failed invalidations. Default: discard
	Logger *slog.Logger
	// Registerer, when set, takes the counter
	// streamworker_users_invalidation_failures_total.
	Registerer prometheus.Registerer
}

// Service handles user.updated and serves GetUser.
type Service struct {
	store    Store
	cache    *cache.Typed[User]
	opt      Options
	logger   *slog.Logger
	failures atomic.Uint64
	counter  prometheus.Counter
}

// New returns a Service writing to store and caching profiles in rdb
// (which may be a cache Redis apart from the stream Redis); opt may be nil.
// Close it to stop the cache's background work.
func New(store Store, rdb redis.UniversalClient, opt *Options) (*Service, error) {
	s := &Service{store: store}
	if opt != nil {
		s.opt = *opt
	}
	if s.opt.CacheTTL <= 0 {
		s.opt.CacheTTL = 10 * time.Minute
	}
	s.logger = s.opt.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("component", "users")
	var copt cache.Options
	if s.opt.Cache != nil {
		copt = *s.opt.Cache
	}
	if copt.Logger == nil {
		copt.Logger = s.logger
	}
	s.cache = cache.NewTyped[User](cache.New(rdb, &copt), nil)
	s.counter = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamworker_users_invalidation_failures_total",
		Help: "Profile invalidations that failed after the user was written; the stale profile lasts until its TTL.",
	})
	if s.opt.Registerer != nil {
		if err := s.opt.Registerer.Register(s.counter); err != nil {
			return nil, fmt.Errorf("users: registering metrics: %w", err)
		}
	}
	return s, nil
}

// Register registers the user.updated handler on mux.
func (s *Service) Register(mux *worker.Mux) { mux.HandleFunc(Type, s.handle) }

// Close stops the cache's background refreshes.
func (s *Service) Close() error { return s.cache.Cache().Close() }

func (s *Service) handle(ctx context.Context, m *worker.Message) error {
	var u User
	if err := json.Unmarshal(m.Data, &u); err != nil {
		return worker.Permanent(fmt.Errorf("decoding user: %w", err))
	}
	if u.ID == "" {
		return worker.Permanent(errors.New("user without id"))
	}
	return s.Update(ctx, u)
}

// Update writes u to the store and then invalidates its cached profile. A
// failed write is returned and nothing is invalidated; a failed
// invalidation is logged and counted (InvalidationFailures) and Update
// returns nil, because the write stands.
func (s *Service) Update(ctx context.Context, u User) error {
	if err := s.store.UpsertUser(ctx, u); err != nil {
		return fmt.Errorf("writing user %s: %w", u.ID, err)
	}
	key := s.key(u.ID)
	if err := s.cache.Cache().Delete(ctx, key); err != nil {
		s.failures.Add(1)
		s.counter.Inc()
		s.logger.Warn("user written but its cached profile not invalidated; stale until its TTL",
			"user", u.ID, "key", key, "ttl", s.opt.CacheTTL, "error", err)
	}
	return nil
}

// GetUser returns the user id, from the cache or, on a miss, from the store
// (once per key however many readers miss at once), caching it for
// CacheTTL. A user that does not exist is an error matching ErrNotFound
// (and cache.ErrNotFound); that answer is cached briefly too.
func (s *Service) GetUser(ctx context.Context, id string) (User, error) {
	u, err := s.cache.Fetch(ctx, s.key(id), s.opt.CacheTTL, func(ctx context.Context) (User, error) {
		u, err := s.store.GetUser(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return User{}, fmt.Errorf("%w: %w", cache.ErrNotFound, err)
		}
		return u, err
	})
	if errors.Is(err, cache.ErrNotFound) && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return u, err
}

// InvalidationFailures is how many invalidations failed after a write.
func (s *Service) InvalidationFailures() uint64 { return s.failures.Load() }

// ProfileKey is the key of id's cached profile.
func (s *Service) ProfileKey(id string) string { return s.key(id) }

func (s *Service) key(id string) string {
	return s.opt.Prefix + keys.MustJoin("user", keys.Tag(id), "profile")
}
