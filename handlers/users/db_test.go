package users_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/streamworker/streamworker/handlers/users"
	"github.com/streamworker/streamworker/internal/testredis"
)

const defaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// postgresStore returns a migrated Postgres store in a schema of the test's
// own, dropped when the test ends. PostgreSQL must be reachable: the test
// fails, it does not skip, when it is not.
func postgresStore(t *testing.T) *users.Postgres {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = defaultTestDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		t.Fatalf("PostgreSQL is required and unreachable at %s: %v\n"+
			"run 'bash scripts/test-deps.sh' (make test does) to install and start one: a trust-auth 'test' database on 127.0.0.1:5432; or set TEST_DATABASE_URL", url, err)
	}
	schema := "users_test_" + testredis.RandomID()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		pool.Close()
	})
	s := users.NewPostgres(pool, schema)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	if err := s.Migrate(ctx); err != nil { // a second worker starting finds it done
		t.Fatalf("migrating again: %v", err)
	}
	return s
}

func sqliteStore(t *testing.T) *users.SQLite {
	t.Helper()
	s, err := users.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStores runs one contract against both stores.
func TestStores(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) users.Store{
		"Postgres": func(t *testing.T) users.Store { return postgresStore(t) },
		"SQLite":   func(t *testing.T) users.Store { return sqliteStore(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			ctx := context.Background()
			if _, err := s.GetUser(ctx, "nobody"); !isNotFound(err) {
				t.Errorf("GetUser(nobody) = %v, want ErrNotFound", err)
			}
			for _, u := range []users.User{
				{ID: "1", Name: "Ada", Email: "ada@example.com", Version: 2},
				{ID: "1", Name: "Old", Email: "old@example.com", Version: 1}, // late: ignored
			} {
				if err := s.UpsertUser(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.GetUser(ctx, "1")
			if err != nil || got.Name != "Ada" || got.Version != 2 {
				t.Errorf("GetUser = %+v, %v; want Ada at version 2 (a late update must not win)", got, err)
			}
			if err := s.UpsertUser(ctx, users.User{ID: "1", Name: "Ada L.", Email: "ada@example.com", Version: 2}); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.GetUser(ctx, "1"); got.Name != "Ada L." {
				t.Errorf("GetUser = %+v, want an equal version to overwrite", got)
			}
		})
	}
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not found")
}
