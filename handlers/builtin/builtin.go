// Package builtin is the configuration of the daemon's built-in plugins
// (WORKER_PLUGINS, DATABASE_URL, WORKER_PLUGINS_PREFIX), apart from
// config.Config because a worker binary of one's own registers its own
// handlers. cmd/worker reads it; deployment tests check manifests against
// it.
package builtin

import (
	"errors"
	"slices"
	"strings"

	"github.com/kelseyhightower/envconfig"

	"github.com/streamworker/streamworker/config"
)

// Names are the built-in handler plugins the daemon can register, by
// the name WORKER_PLUGINS uses, and the message type each handles:
// users (user.updated), points (points.transfer, points.awarded), scores (score.submitted),
// notifications (notification.requested), sessions (session.touched),
// reports (report.requested).
// examples (order.created, payment.charge, email.send: acknowledged,
// retried twice, dead-lettered; no Redis of their own) is off unless named.
var Names = []string{"users", "points", "scores", "notifications", "sessions", "reports", "examples"}

// Config is the configuration of the daemon's built-in plugins, apart
// from config.Config because a worker binary of one's own registers its own
// handlers.
type Config struct {
	// Enabled are the plugins to register, comma separated; "none" for
	// none. Default: all of Names but examples
	Enabled []string `envconfig:"WORKER_PLUGINS" default:"users,points,scores,notifications,sessions,reports"`
	// DatabaseURL is the PostgreSQL the users plugin writes to
	// (postgres://user:pass@host:5432/db). Required when users is enabled,
	// except in --demo, which falls back to an embedded SQLite.
	// Default: none
	DatabaseURL string `envconfig:"DATABASE_URL"`
	// Prefix is put in front of every key and pub/sub channel the plugins
	// use, so the least-privilege ACL (deploy/redis/users.acl) can grant
	// their commands on sw:plugins:* only. Do not name a stream under it.
	// Default: sw:plugins:
	Prefix string `envconfig:"WORKER_PLUGINS_PREFIX" default:"sw:plugins:"`
}

// LoadConfig reads the plugin configuration from the environment and
// validates it. Its errors are *config.Error, like the runtime's.
func LoadConfig() (Config, error) {
	var p Config
	if err := envconfig.Process("", &p); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return Config{}, bad(pe.KeyName, pe.Value, "a value of type "+pe.TypeName)
		}
		return Config{}, err
	}
	return p, p.Validate(false)
}

// Validate checks the names in Enabled and, unless demo, that DatabaseURL
// is set when users is enabled.
func (p *Config) Validate(demo bool) error {
	allowed := "a comma-separated list of " + strings.Join(Names, ", ") + `, or "none"`
	if len(p.Enabled) == 1 && strings.TrimSpace(p.Enabled[0]) == "none" {
		p.Enabled = nil
		return nil
	}
	seen := map[string]bool{}
	for i, n := range p.Enabled {
		n = strings.TrimSpace(n)
		p.Enabled[i] = n
		if !slices.Contains(Names, n) || seen[n] {
			return bad("WORKER_PLUGINS", strings.Join(p.Enabled, ","), allowed+", each once")
		}
		seen[n] = true
	}
	if !demo && p.On("users") && p.DatabaseURL == "" {
		return bad("DATABASE_URL", "", "a postgres:// URL when WORKER_PLUGINS includes users")
	}
	if p.DatabaseURL != "" && !strings.HasPrefix(p.DatabaseURL, "postgres://") && !strings.HasPrefix(p.DatabaseURL, "postgresql://") {
		return bad("DATABASE_URL", config.Redact(p.DatabaseURL), "a postgres:// or postgresql:// URL")
	}
	return nil
}

// On reports whether the plugin name is enabled.
func (p Config) On(name string) bool { return slices.Contains(p.Enabled, name) }

// bad reports a plugin configuration problem as a *config.Error, so main
// maps it to exit code 2 like the runtime's own.
func bad(name, value, allowed string) error {
	return &config.Error{Var: name, Value: value, Allowed: allowed}
}
