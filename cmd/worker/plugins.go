package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/builtin"
	"github.com/streamworker/streamworker/handlers/notifications"
	"github.com/streamworker/streamworker/handlers/points"
	"github.com/streamworker/streamworker/handlers/reports"
	"github.com/streamworker/streamworker/handlers/scores"
	"github.com/streamworker/streamworker/handlers/sessions"
	"github.com/streamworker/streamworker/handlers/users"
	"github.com/streamworker/streamworker/worker"
)

// builtins are the built-in plugins once built, and what to close after the
// runtime stops.
type builtins struct {
	users   *users.Service
	points  *points.Ledger
	scores  *scores.Scores
	notifs  *notifications.Notifications
	session *sessions.Sessions
	reports *reports.Reports
	closers []func()
}

// pluginOptions are what the demo changes; the daemon uses the zero value.
type pluginOptions struct {
	// userStore, when set, is the users plugin's store instead of the
	// PostgreSQL at DATABASE_URL.
	userStore users.Store
	// notifyLimit, when set, replaces the notifications plugin's default.
	notifications *notifications.Options
	reports       *reports.Options
}

// setup returns the runtime option that builds every enabled plugin with
// the runtime's Redis client, logger and metrics registry and registers it
// on mux. b is filled in as they are built; close it after Run returns.
func (b *builtins) setup(p builtin.Config, mux *worker.Mux, po pluginOptions) worker.Option {
	return worker.WithSetup(func(ctx context.Context, d worker.Deps) error {
		if p.On("users") {
			store := po.userStore
			if store == nil {
				pg, err := openPostgres(ctx, p.DatabaseURL)
				if err != nil {
					return err
				}
				b.closers = append(b.closers, pg.Close)
				s := users.NewPostgres(pg, "")
				if err := s.Migrate(ctx); err != nil {
					return err
				}
				store = s
			}
			svc, err := users.New(store, d.Redis, &users.Options{Prefix: p.Prefix, Logger: d.Logger, Registerer: d.Registerer})
			if err != nil {
				return err
			}
			b.closers = append(b.closers, func() { _ = svc.Close() })
			svc.Register(mux)
			b.users = svc
		}
		if p.On("examples") {
			registerExamples(mux)
		}
		if p.On("points") {
			b.points = points.New(d.Redis, &points.Options{Prefix: p.Prefix})
			b.points.Register(mux)
		}
		if p.On("scores") {
			b.scores = scores.New(d.Redis, &scores.Options{Prefix: p.Prefix, Logger: d.Logger})
			b.scores.Register(mux)
		}
		if p.On("notifications") {
			opt := notifications.Options{}
			if po.notifications != nil {
				opt = *po.notifications
			}
			opt.Prefix = p.Prefix
			b.notifs = notifications.New(d.Redis, &opt)
			b.notifs.Register(mux)
		}
		if p.On("sessions") {
			b.session = sessions.New(d.Redis, &sessions.Options{Prefix: p.Prefix, Logger: d.Logger})
			b.session.Register(mux)
		}
		if p.On("reports") {
			opt := reports.Options{}
			if po.reports != nil {
				opt = *po.reports
			}
			opt.Prefix = p.Prefix
			opt.Logger = d.Logger
			b.reports = reports.New(d.Redis, &opt)
			b.reports.Register(mux)
		}
		return nil
	})
}

// close releases what the plugins hold, last built first.
func (b *builtins) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

func openPostgres(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("users plugin: DATABASE_URL is not set")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("users plugin: DATABASE_URL=%q: %w", config.Redact(url), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("users plugin: connecting to DATABASE_URL=%q: %w", config.Redact(url), err)
	}
	return pool, nil
}
