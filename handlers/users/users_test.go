package users_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/users"
	"github.com/streamworker/streamworker/worker"
)

// faultStore fails the first failWrites writes, and records whether the
// cached profile was still there each time a write was attempted.
type faultStore struct {
	users.Store
	failWrites int
	attempted  func() // called at each write attempt
	writes     atomic.Int32
	reads      atomic.Int32
}

var errDBDown = errors.New("injected: database unavailable")

func (s *faultStore) UpsertUser(ctx context.Context, u users.User) error {
	if s.attempted != nil {
		s.attempted()
	}
	if int(s.writes.Add(1)) <= s.failWrites {
		return errDBDown
	}
	return s.Store.UpsertUser(ctx, u)
}

func (s *faultStore) GetUser(ctx context.Context, id string) (users.User, error) {
	s.reads.Add(1)
	return s.Store.GetUser(ctx, id)
}

func start(t *testing.T, store users.Store, cacheRedis redis.UniversalClient) (*handlertest.Harness, *users.Service, *prometheus.Registry) {
	t.Helper()
	h := handlertest.New(t)
	if cacheRedis == nil {
		cacheRedis = h.Redis
	}
	reg := prometheus.NewRegistry()
	svc, err := users.New(store, cacheRedis, &users.Options{Prefix: h.Prefix, Logger: h.Logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	mux := worker.NewMux()
	svc.Register(mux)
	h.Start(mux)
	return h, svc, reg
}

func cached(t *testing.T, h *handlertest.Harness, svc *users.Service, id string) bool {
	t.Helper()
	n, err := h.Redis.Exists(context.Background(), svc.ProfileKey(id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestUserUpdatedWritesThenInvalidates(t *testing.T) {
	t.Parallel()
	store := postgresStore(t)
	h, svc, _ := start(t, store, nil)
	ctx := context.Background()

	h.Acked(h.Send(users.Type, users.User{ID: "42", Name: "Ada", Email: "ada@example.com", Version: 1}))
	if u, err := svc.GetUser(ctx, "42"); err != nil || u.Name != "Ada" {
		t.Fatalf("GetUser = %+v, %v", u, err)
	}
	if !cached(t, h, svc, "42") {
		t.Fatal("GetUser did not cache the profile")
	}
	h.Acked(h.Send(users.Type, users.User{ID: "42", Name: "Ada Lovelace", Email: "ada@example.com", Version: 2}))
	if cached(t, h, svc, "42") {
		t.Error("the cached profile survived the update")
	}
	if u, err := svc.GetUser(ctx, "42"); err != nil || u.Name != "Ada Lovelace" {
		t.Errorf("GetUser after the update = %+v, %v; want the new name", u, err)
	}
	if _, err := svc.GetUser(ctx, "nobody"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("GetUser(nobody) = %v, want ErrNotFound", err)
	}
	h.DeadLettered(h.Send(users.Type, `{"name":"no id"}`))
}

func TestDatabaseWriteFailureRetriesAndInvalidatesNothing(t *testing.T) {
	t.Parallel()
	pg := postgresStore(t)
	ctx := context.Background()
	if err := pg.UpsertUser(ctx, users.User{ID: "7", Name: "Old", Email: "old@example.com"}); err != nil {
		t.Fatal(err)
	}
	store := &faultStore{Store: pg, failWrites: 2}
	h, svc, reg := start(t, store, nil)
	if u, err := svc.GetUser(ctx, "7"); err != nil || u.Name != "Old" {
		t.Fatalf("GetUser = %+v, %v", u, err)
	}
	var mu sync.Mutex
	var stillCached []bool
	store.attempted = func() {
		mu.Lock()
		defer mu.Unlock()
		stillCached = append(stillCached, cached(t, h, svc, "7"))
	}

	r := h.Acked(h.Send(users.Type, users.User{ID: "7", Name: "New", Email: "new@example.com", Version: 1}))
	if r.Retries != 2 || r.Calls != 3 {
		t.Errorf("calls=%d retries=%d, want two failed writes retried then success", r.Calls, r.Retries)
	}
	mu.Lock()
	if len(stillCached) != 3 || !stillCached[1] || !stillCached[2] {
		t.Errorf("profile cached at each write attempt = %v, want true after each failed write: nothing is invalidated", stillCached)
	}
	mu.Unlock()
	if u, _ := svc.GetUser(ctx, "7"); u.Name != "New" {
		t.Errorf("GetUser = %+v after the write succeeded, want New", u)
	}
	if n := invalidationMetric(reg); n != 0 {
		t.Errorf("invalidation failures = %v, want 0", n)
	}

	// A database down for every attempt: dead-lettered, the cache untouched.
	store.failWrites = 1 << 30 // the handler is not running now: no race
	if u, _ := svc.GetUser(ctx, "7"); u.Name != "New" {
		t.Fatalf("GetUser = %+v", u)
	}
	r = h.DeadLettered(h.Send(users.Type, users.User{ID: "7", Name: "Newer", Email: "new@example.com", Version: 2}))
	if r.Calls != h.Config.MaxAttempts {
		t.Errorf("calls = %d, want %d attempts", r.Calls, h.Config.MaxAttempts)
	}
	if !cached(t, h, svc, "7") {
		t.Error("a failed write invalidated the cache")
	}
}

// failHook makes every command fail while fail is set: the cache Redis down.
type failHook struct{ fail *atomic.Bool }

var errCacheDown = errors.New("injected: cache redis unavailable")

func (h failHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h failHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.fail.Load() {
			cmd.SetErr(errCacheDown)
			return errCacheDown
		}
		return next(ctx, cmd)
	}
}

func (h failHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.fail.Load() {
			for _, c := range cmds {
				c.SetErr(errCacheDown)
			}
			return errCacheDown
		}
		return next(ctx, cmds)
	}
}

func TestInvalidationFailureKeepsTheWrite(t *testing.T) {
	t.Parallel()
	pg := postgresStore(t)
	hb := handlertest.New(t) // for a second client on the same Redis
	var fail atomic.Bool
	cacheRedis := redis.NewClient(&redis.Options{Addr: hb.Redis.Options().Addr})
	cacheRedis.AddHook(failHook{fail: &fail})
	t.Cleanup(func() { _ = cacheRedis.Close() })
	h, svc, reg := start(t, pg, cacheRedis)
	ctx := context.Background()

	fail.Store(true)
	r := h.Acked(h.Send(users.Type, users.User{ID: "9", Name: "Grace", Email: "grace@example.com", Version: 1}))
	fail.Store(false)
	if r.Retries != 0 {
		t.Errorf("retries = %d, want 0: the write stands, the message is done", r.Retries)
	}
	if u, err := pg.GetUser(ctx, "9"); err != nil || u.Name != "Grace" {
		t.Errorf("database row = %+v, %v; want the write to stand", u, err)
	}
	if svc.InvalidationFailures() != 1 || invalidationMetric(reg) != 1 {
		t.Errorf("invalidation failures = %d (metric %v), want 1", svc.InvalidationFailures(), invalidationMetric(reg))
	}
	if !strings.Contains(h.Logs(), "not invalidated") || !strings.Contains(h.Logs(), errCacheDown.Error()) {
		t.Errorf("logs lack the failed invalidation:\n%s", h.Logs())
	}
}

// invalidationMetric reads the plugin's counter from reg.
func invalidationMetric(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "streamworker_users_invalidation_failures_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

func TestGetUserLoadsOnceUnderAStampede(t *testing.T) {
	t.Parallel()
	pg := postgresStore(t)
	store := &faultStore{Store: pg}
	_, svc, _ := start(t, store, nil)
	ctx := context.Background()
	if err := pg.UpsertUser(ctx, users.User{ID: "hot", Name: "Hot", Email: "hot@example.com"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if u, err := svc.GetUser(ctx, "hot"); err != nil || u.Name != "Hot" {
				t.Errorf("GetUser = %+v, %v", u, err)
			}
		})
	}
	wg.Wait()
	if n := store.reads.Load(); n != 1 {
		t.Errorf("store read %d times for 50 concurrent misses, want 1", n)
	}
}
