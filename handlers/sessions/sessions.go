// Package sessions is the built-in session.touched plugin: it updates fields
// of a user's session and slides its idle timeout (package session), without
// ever bringing back a session that expired or was deleted.
//
// Keys: <prefix>session:<id> (package session).
package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/session"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type the plugin handles.
const Type = "session.touched"

// Touch is the payload of a session.touched message.
type Touch struct {
	Session string `json:"session"`
	// Fields are set in the session; none only slides its timeout.
	Fields map[string]string `json:"fields,omitempty"`
}

// Options configure Sessions.
type Options struct {
	// Prefix is put in front of every key. Default: ""
	Prefix string
	// IdleTimeout and MaxLifetime are the session's (package session's
	// defaults: 30m and 24h).
	IdleTimeout, MaxLifetime time.Duration
	// Logger receives touches of sessions that are gone. Default: discard
	Logger *slog.Logger
}

// Sessions handles session.touched.
type Sessions struct {
	store  *session.Store
	logger *slog.Logger
	gone   atomic.Uint64
}

// New returns Sessions on rdb; opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Sessions {
	var o Options
	if opt != nil {
		o = *opt
	}
	s := &Sessions{store: session.New(rdb, &session.Options{Prefix: o.Prefix + "session:", IdleTimeout: o.IdleTimeout, MaxLifetime: o.MaxLifetime})}
	s.logger = o.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("component", "sessions")
	return s
}

// Store is the session store, for the code that logs users in.
func (s *Sessions) Store() *session.Store { return s.store }

// Gone is how many touches found their session expired or deleted.
func (s *Sessions) Gone() uint64 { return s.gone.Load() }

// Register registers the session.touched handler on mux.
func (s *Sessions) Register(mux *worker.Mux) { mux.HandleFunc(Type, s.handle) }

func (s *Sessions) handle(ctx context.Context, m *worker.Message) error {
	var t Touch
	if err := json.Unmarshal(m.Data, &t); err != nil {
		return worker.Permanent(fmt.Errorf("decoding touch: %w", err))
	}
	if t.Session == "" {
		return worker.Permanent(errors.New("a touch needs a session"))
	}
	var err error
	if len(t.Fields) == 0 {
		err = s.store.Touch(ctx, t.Session)
	} else {
		values := make(map[string]any, len(t.Fields))
		for k, v := range t.Fields {
			values[k] = v
		}
		err = s.store.Update(ctx, t.Session, values)
	}
	switch {
	case errors.Is(err, session.ErrNotFound):
		// The user logged out or idled away: normal, and nothing to retry.
		s.gone.Add(1)
		s.logger.Debug("touch of a session that is gone", "session_prefix", t.Session[:min(8, len(t.Session))])
		return nil
	case errors.Is(err, session.ErrReservedField):
		return worker.Permanent(err)
	case err != nil:
		return fmt.Errorf("touching session: %w", err)
	}
	return nil
}
