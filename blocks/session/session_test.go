package session_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/session"
	"github.com/streamworker/streamworker/internal/testredis"
)

func newStore(t testing.TB, opt session.Options) (*session.Store, *redis.Client, string) {
	t.Helper()
	rdb := testredis.Shared(t).Client(t)
	opt.Prefix = testredis.Prefix(t)
	return session.New(rdb, &opt), rdb, opt.Prefix
}

func TestSaveAndRead(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := newStore(t, session.Options{IdleTimeout: time.Minute, MaxLifetime: time.Hour})
	ctx := context.Background()
	id := session.NewID()

	if err := s.Save(ctx, id, map[string]any{"user_id": 42, "role": "admin", "csrf": "x1"}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+id).Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("PTTL after Save = %v, want the idle timeout", ttl)
	}
	got, err := s.GetAll(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"user_id": "42", "role": "admin", "csrf": "x1"}, got); diff != "" {
		t.Errorf("GetAll (-want +got):\n%s", diff)
	}
	if v, err := s.Get(ctx, id, "role"); err != nil || v != "admin" {
		t.Errorf(`Get("role") = %q, %v; want "admin"`, v, err)
	}
	if _, err := s.Get(ctx, id, "missing"); !errors.Is(err, session.ErrNoField) {
		t.Errorf(`Get("missing") error = %v, want ErrNoField`, err)
	}
	if _, err := s.Get(ctx, id, session.DeadlineField); !errors.Is(err, session.ErrNoField) {
		t.Errorf("Get(DeadlineField) error = %v, want ErrNoField", err)
	}

	// Save replaces the whole session.
	if err := s.Save(ctx, id, map[string]any{"user_id": 7}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetAll(ctx, id)
	if diff := cmp.Diff(map[string]string{"user_id": "7"}, got); diff != "" {
		t.Errorf("GetAll after a second Save (-want +got):\n%s", diff)
	}

	if err := s.Save(ctx, id, map[string]any{session.DeadlineField: 1}); !errors.Is(err, session.ErrReservedField) {
		t.Errorf("Save with the deadline field = %v, want ErrReservedField", err)
	}
	if err := s.Update(ctx, id, map[string]any{session.DeadlineField: 1}); !errors.Is(err, session.ErrReservedField) {
		t.Errorf("Update with the deadline field = %v, want ErrReservedField", err)
	}
}

func TestMissingSession(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := newStore(t, session.Options{})
	ctx := context.Background()
	id := session.NewID()

	if _, err := s.Get(ctx, id, "user_id"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	if _, err := s.GetAll(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("GetAll = %v, want ErrNotFound", err)
	}
	if err := s.Touch(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Touch = %v, want ErrNotFound", err)
	}
	// An update must not create a partial session.
	if err := s.Update(ctx, id, map[string]any{"cart": 3}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Update = %v, want ErrNotFound", err)
	}
	if n := rdb.Exists(ctx, prefix+id).Val(); n != 0 {
		t.Error("Update of a missing session created it")
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Errorf("Delete of a missing session = %v, want nil", err)
	}
}

func TestUpdateIsPartial(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := newStore(t, session.Options{IdleTimeout: time.Minute})
	ctx := context.Background()
	id := session.NewID()
	if err := s.Save(ctx, id, map[string]any{"user_id": "42", "cart": "0"}); err != nil {
		t.Fatal(err)
	}
	rdb.PExpire(ctx, prefix+id, time.Second) // as if idle for a while

	if err := s.Update(ctx, id, map[string]any{"cart": 3, "theme": "dark"}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetAll(ctx, id)
	if diff := cmp.Diff(map[string]string{"user_id": "42", "cart": "3", "theme": "dark"}, got); diff != "" {
		t.Errorf("GetAll after Update (-want +got):\n%s", diff)
	}
	if ttl := rdb.PTTL(ctx, prefix+id).Val(); ttl <= 50*time.Second {
		t.Errorf("PTTL after Update = %v, want the idle timeout again", ttl)
	}
}

// Every access — Get, GetAll, Touch, Update — pushes the expiry back out to
// the idle timeout.
func TestEveryAccessSlidesTheIdleTimeout(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := newStore(t, session.Options{IdleTimeout: time.Minute})
	ctx := context.Background()
	id := session.NewID()
	if err := s.Save(ctx, id, map[string]any{"user_id": "42"}); err != nil {
		t.Fatal(err)
	}
	access := map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, id, "user_id"); return err },
		"GetAll": func() error { _, err := s.GetAll(ctx, id); return err },
		"Touch":  func() error { return s.Touch(ctx, id) },
		"Update": func() error { return s.Update(ctx, id, map[string]any{"n": 1}) },
	}
	for name, f := range access {
		rdb.PExpire(ctx, prefix+id, time.Second) // as if idle for 59s
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ttl := rdb.PTTL(ctx, prefix+id).Val(); ttl <= 50*time.Second || ttl > time.Minute {
			t.Errorf("PTTL after %s = %v, want the idle timeout", name, ttl)
		}
	}
}

func TestIdleSessionExpires(t *testing.T) {
	t.Parallel()
	const idle = 150 * time.Millisecond
	s, rdb, prefix := newStore(t, session.Options{IdleTimeout: idle})
	ctx := context.Background()
	id := session.NewID()
	saved := time.Now()
	if err := s.Save(ctx, id, map[string]any{"user_id": "42"}); err != nil {
		t.Fatal(err)
	}
	// Poll the key, not the session: reading it would keep it alive.
	waitGone(t, saved, idle, func() bool { return rdb.Exists(ctx, prefix+id).Val() == 0 })
	if _, err := s.GetAll(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("GetAll of an idle-expired session = %v, want ErrNotFound", err)
	}
}

// A session used all the time still ends at its maximum lifetime: the
// expiry each access sets is cut to the time left, and a read after the
// deadline deletes it.
func TestMaxLifetimeCapsTheSlidingTimeout(t *testing.T) {
	t.Parallel()
	const maxLife = 300 * time.Millisecond
	s, rdb, prefix := newStore(t, session.Options{IdleTimeout: time.Hour, MaxLifetime: maxLife})
	ctx := context.Background()
	id := session.NewID()
	saved := time.Now()
	if err := s.Save(ctx, id, map[string]any{"user_id": "42"}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+id).Val(); ttl > maxLife {
		t.Errorf("PTTL after Save = %v, want at most the max lifetime %v (the idle timeout is longer)", ttl, maxLife)
	}

	// A session whose deadline is near gets an expiry no later than it.
	s2, rdb2, prefix2 := newStore(t, session.Options{IdleTimeout: time.Minute, MaxLifetime: time.Hour})
	id2 := session.NewID()
	if err := s2.Save(ctx, id2, map[string]any{"user_id": "7"}); err != nil {
		t.Fatal(err)
	}
	near := time.Now().Add(2 * time.Second)
	rdb2.HSet(ctx, prefix2+id2, session.DeadlineField, near.UnixMilli()) // as if saved 59m58s ago
	for name, f := range map[string]func() error{
		"Get":    func() error { _, err := s2.Get(ctx, id2, "user_id"); return err },
		"GetAll": func() error { _, err := s2.GetAll(ctx, id2); return err },
		"Touch":  func() error { return s2.Touch(ctx, id2) },
		"Update": func() error { return s2.Update(ctx, id2, map[string]any{"n": 1}) },
	} {
		left := time.Until(near)
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ttl := rdb2.PTTL(ctx, prefix2+id2).Val(); ttl <= 0 || ttl > left+time.Millisecond {
			t.Errorf("PTTL after %s = %v, want at most the %v left before the deadline", name, ttl, left)
		}
	}
	// Past its deadline, a read deletes it even though the key has not
	// expired yet.
	rdb2.HSet(ctx, prefix2+id2, session.DeadlineField, time.Now().Add(-time.Millisecond).UnixMilli())
	rdb2.PExpire(ctx, prefix2+id2, time.Minute)
	if _, err := s2.Get(ctx, id2, "user_id"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get past the deadline = %v, want ErrNotFound", err)
	}
	if rdb2.Exists(ctx, prefix2+id2).Val() != 0 {
		t.Error("a session read past its deadline was not deleted")
	}

	// Reading it all the time does not keep the first session alive.
	waitGone(t, saved, maxLife, func() bool {
		_, err := s.Get(ctx, id, "user_id")
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			t.Fatal(err)
		}
		return err != nil
	})
}

// waitGone polls gone until it reports true, and checks the session lasted
// at least atLeast after it was saved.
func waitGone(t *testing.T, saved time.Time, atLeast time.Duration, gone func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone() {
		if time.Now().After(deadline) {
			t.Fatalf("session still alive %v after it was saved", time.Since(saved))
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if lived := time.Since(saved); lived < atLeast-2*time.Millisecond {
		t.Errorf("session ended after %v, before %v", lived, atLeast)
	}
}

// Updates racing a Delete never bring the session back.
func TestDeleteWinsOverConcurrentUpdates(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := newStore(t, session.Options{})
	ctx := context.Background()
	id := session.NewID()
	if err := s.Save(ctx, id, map[string]any{"user_id": "42"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	deleted := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				err := s.Update(ctx, id, map[string]any{"g" + strconv.Itoa(g): i})
				if errors.Is(err, session.ErrNotFound) {
					select {
					case <-deleted:
						return
					default:
						t.Errorf("Update = ErrNotFound before the Delete")
						return
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 50 { // let the updates run
		if _, err := s.GetAll(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	close(deleted)
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := rdb.Exists(ctx, prefix+id).Val(); n != 0 {
		t.Errorf("session exists after Delete: %v", rdb.HGetAll(ctx, prefix+id).Val())
	}
	if _, err := s.GetAll(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("GetAll after Delete = %v, want ErrNotFound", err)
	}
}

func TestNewIDIsRandom(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := session.NewID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("NewID = %q: want 32 hex characters, never repeated", id)
		}
		seen[id] = true
	}
}
