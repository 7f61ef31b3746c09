package users

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgMigrations are the plugin's schema, applied in order once each by
// Postgres.Migrate. Append; never edit one that has shipped. %[1]s is the
// quoted schema.
var pgMigrations = []string{
	`CREATE TABLE %[1]s.users (
		id         text PRIMARY KEY,
		name       text NOT NULL,
		email      text NOT NULL,
		version    bigint NOT NULL DEFAULT 0,
		updated_at timestamptz NOT NULL DEFAULT now()
	)`,
}

// Postgres is a Store on PostgreSQL (DATABASE_URL), in one schema.
type Postgres struct {
	pool   *pgxpool.Pool
	schema string // quoted
	raw    string
}

// NewPostgres returns a Store on pool whose tables live in schema
// ("public" when empty). Call Migrate before use.
func NewPostgres(pool *pgxpool.Pool, schema string) *Postgres {
	if schema == "" {
		schema = "public"
	}
	return &Postgres{pool: pool, schema: pgx.Identifier{schema}.Sanitize(), raw: schema}
}

// Migrate creates the schema and applies the migrations not yet applied,
// in one transaction under an advisory lock, so workers starting together
// do not race.
func (p *Postgres) Migrate(ctx context.Context) error {
	h := fnv.New64a()
	h.Write([]byte("streamworker/users:" + p.raw))
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return fmt.Errorf("users: migration lock: %w", err)
		}
		for _, q := range []string{
			`CREATE SCHEMA IF NOT EXISTS %[1]s`,
			`CREATE TABLE IF NOT EXISTS %[1]s.users_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		} {
			if _, err := tx.Exec(ctx, fmt.Sprintf(q, p.schema)); err != nil {
				return fmt.Errorf("users: migrating: %w", err)
			}
		}
		var applied int
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(max(version), 0) FROM %s.users_migrations`, p.schema)).Scan(&applied); err != nil {
			return fmt.Errorf("users: migrating: %w", err)
		}
		for v := applied + 1; v <= len(pgMigrations); v++ {
			if _, err := tx.Exec(ctx, fmt.Sprintf(pgMigrations[v-1], p.schema)); err != nil {
				return fmt.Errorf("users: migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.users_migrations (version) VALUES ($1)`, p.schema), v); err != nil {
				return fmt.Errorf("users: migration %d: %w", v, err)
			}
		}
		return nil
	})
}

// UpsertUser writes u unless the stored row has a higher version.
func (p *Postgres) UpsertUser(ctx context.Context, u User) error {
	_, err := p.pool.Exec(ctx, fmt.Sprintf(`
		INSERT INTO %s.users AS u (id, name, email, version, updated_at) VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
			version = EXCLUDED.version, updated_at = now()
		WHERE u.version <= EXCLUDED.version`, p.schema), u.ID, u.Name, u.Email, u.Version)
	return err
}

// GetUser reads the user id.
func (p *Postgres) GetUser(ctx context.Context, id string) (User, error) {
	u := User{ID: id}
	err := p.pool.QueryRow(ctx, fmt.Sprintf(`SELECT name, email, version FROM %s.users WHERE id = $1`, p.schema), id).
		Scan(&u.Name, &u.Email, &u.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return u, err
}
