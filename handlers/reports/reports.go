// Package reports is the built-in report.requested plugin: it builds a
// report under a lock (package lock), so one worker at a time builds a given
// report, and writes it to a store that accepts a write only with a fencing
// token at least as high as the last one it saw. A worker that was paused
// past its lock's TTL (GC, swap) and comes back believing it still holds the
// lock has its write refused instead of overwriting a newer report.
//
// Keys: <prefix>report:{<id>}:lock and its fence counter (package lock);
// <prefix>report:{<id>}:body and its highest accepted token (lock.SetFenced).
package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/blocks/lock"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type the plugin handles.
const Type = "report.requested"

// Request is the payload of a report.requested message.
type Request struct {
	Report string `json:"report"`
	// Params are passed to the builder.
	Params map[string]string `json:"params,omitempty"`
}

// Store keeps built reports. Put must refuse, with an error matching
// lock.ErrStaleFence, a write whose fence is lower than one it accepted.
type Store interface {
	Put(ctx context.Context, report string, body []byte, fence int64) error
	Get(ctx context.Context, report string) ([]byte, error)
}

// BuildFunc builds a report's body. It should honour ctx: it is cancelled
// when the lock is lost.
type BuildFunc func(ctx context.Context, r Request) ([]byte, error)

// Options configure Reports.
type Options struct {
	// Prefix is put in front of every key. Default: ""
	Prefix string
	// LockTTL is the lock's TTL; it is refreshed while the build runs.
	// Default: 30s
	LockTTL time.Duration
	// Busy is how long a request waits (worker.Delay) when another worker
	// holds the report's lock. Default: 1s
	Busy time.Duration
	// Build builds a report. Default: a JSON summary of the request.
	Build BuildFunc
	// Store keeps the reports. Default: NewRedisStore(rdb, Prefix)
	Store Store
	// Logger receives refused stale writes. Default: discard
	Logger *slog.Logger
}

// Reports handles report.requested.
type Reports struct {
	locker *lock.Locker
	opt    Options
	logger *slog.Logger
	stale  atomic.Uint64
}

// New returns Reports on rdb; opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Reports {
	r := &Reports{locker: lock.New(rdb)}
	if opt != nil {
		r.opt = *opt
	}
	if r.opt.LockTTL <= 0 {
		r.opt.LockTTL = 30 * time.Second
	}
	if r.opt.Busy <= 0 {
		r.opt.Busy = time.Second
	}
	if r.opt.Build == nil {
		r.opt.Build = func(_ context.Context, req Request) ([]byte, error) {
			return json.Marshal(map[string]any{"report": req.Report, "params": req.Params, "built_at": time.Now().UTC()})
		}
	}
	if r.opt.Store == nil {
		r.opt.Store = NewRedisStore(rdb, r.opt.Prefix)
	}
	r.logger = r.opt.Logger
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.logger = r.logger.With("component", "reports")
	return r
}

// Register registers the report.requested handler on mux.
func (r *Reports) Register(mux *worker.Mux) { mux.HandleFunc(Type, r.handle) }

// Store is where reports are written.
func (r *Reports) Store() Store { return r.opt.Store }

// StaleWrites is how many writes the store refused for a stale fence.
func (r *Reports) StaleWrites() uint64 { return r.stale.Load() }

// LockKey is the key of report's lock.
func (r *Reports) LockKey(report string) string {
	return r.opt.Prefix + keys.MustJoin("report", keys.Tag(report), "lock")
}

func (r *Reports) handle(ctx context.Context, m *worker.Message) error {
	var req Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return worker.Permanent(fmt.Errorf("decoding report request: %w", err))
	}
	if req.Report == "" {
		return worker.Permanent(errors.New("a report request needs a report"))
	}
	err := r.locker.Do(ctx, r.LockKey(req.Report), r.opt.LockTTL, nil, func(ctx context.Context, lk *lock.Lock) error {
		body, err := r.opt.Build(ctx, req)
		if err != nil {
			return fmt.Errorf("building report %s: %w", req.Report, err)
		}
		return r.opt.Store.Put(ctx, req.Report, body, lk.Fence())
	})
	switch {
	case errors.Is(err, lock.ErrNotObtained):
		// Another worker is building it now: come back when it is likely done.
		return worker.Delay(r.opt.Busy, err)
	case errors.Is(err, lock.ErrStaleFence):
		// A newer holder wrote the report after this one lost the lock: its
		// report stands, and this request was served by it.
		r.stale.Add(1)
		r.logger.Warn("stale report write refused: a newer lock holder wrote it", "report", req.Report, "error", err)
		return nil
	case err != nil:
		return err
	}
	return nil
}

// RedisStore keeps reports in Redis, fenced with lock.SetFenced.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisStore returns a RedisStore writing under prefix.
func NewRedisStore(rdb redis.UniversalClient, prefix string) *RedisStore {
	return &RedisStore{rdb: rdb, prefix: prefix}
}

func (s *RedisStore) key(report string) string {
	return s.prefix + keys.MustJoin("report", keys.Tag(report), "body")
}

// Put writes body unless a write with a higher fence was accepted; then it
// returns an error matching lock.ErrStaleFence.
func (s *RedisStore) Put(ctx context.Context, report string, body []byte, fence int64) error {
	return lock.SetFenced(ctx, s.rdb, s.key(report), body, fence)
}

// Get returns the report's body, or redis.Nil when there is none.
func (s *RedisStore) Get(ctx context.Context, report string) ([]byte, error) {
	return s.rdb.Get(ctx, s.key(report)).Bytes()
}
