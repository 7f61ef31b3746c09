package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "modernc.org/sqlite" // the pure-Go "sqlite" driver
)

// sqliteMigrations are the SQLite twin of pgMigrations.
var sqliteMigrations = []string{
	`CREATE TABLE users (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL,
		email      TEXT NOT NULL,
		version    INTEGER NOT NULL DEFAULT 0,
		updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`,
}

// SQLite is a Store on an embedded SQLite database (modernc.org/sqlite,
// pure Go): what the demo uses when there is no DATABASE_URL.
type SQLite struct{ db *sql.DB }

// OpenSQLite opens (creating if need be) the SQLite database at dsn — a
// file path, or "file::memory:?cache=shared" style DSNs — and migrates it.
func OpenSQLite(ctx context.Context, dsn string) (*SQLite, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("users: opening sqlite: %w", err)
	}
	db.SetMaxOpenConns(1) // one writer; also keeps an in-memory database alive and whole
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("users: migrating sqlite: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("users: migrating sqlite: %w", err)
	}
	var applied int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM users_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("users: migrating sqlite: %w", err)
	}
	for v := applied + 1; v <= len(sqliteMigrations); v++ {
		if _, err := tx.ExecContext(ctx, sqliteMigrations[v-1]); err != nil {
			return fmt.Errorf("users: sqlite migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users_migrations (version) VALUES (?)`, v); err != nil {
			return fmt.Errorf("users: sqlite migration %d: %w", v, err)
		}
	}
	return tx.Commit()
}

// UpsertUser writes u unless the stored row has a higher version.
func (s *SQLite) UpsertUser(ctx context.Context, u User) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO users (id, name, email, version, updated_at) VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
			version = excluded.version, updated_at = CURRENT_TIMESTAMP
		WHERE users.version <= excluded.version`, u.ID, u.Name, u.Email, u.Version)
	return err
}

// GetUser reads the user id.
func (s *SQLite) GetUser(ctx context.Context, id string) (User, error) {
	u := User{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT name, email, version FROM users WHERE id = ?`, id).Scan(&u.Name, &u.Email, &u.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return u, err
}
