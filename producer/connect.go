package producer

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
)

// Connect returns a client for the stream Redis the worker uses, built by the
// config package from the same settings as the worker's, as getenv reads
// them: REDIS_URL (default redis://127.0.0.1:6379/0) with the TLS files
// REDIS_TLS_CA, REDIS_TLS_CERT and REDIS_TLS_KEY; REDIS_CLUSTER_ADDRS for a
// Redis Cluster; REDIS_SENTINEL_ADDRS, REDIS_SENTINEL_MASTER and
// REDIS_SENTINEL_PASSWORD for Sentinel (config.Redis says how they combine).
// A non-empty redisURL (a command's --redis-url) replaces REDIS_URL. Like
// NewClient's, the client never resends a command by itself.
//
// The commands (cmd/producer, cmd/streamctl) connect only through here. A
// bad setting is a *config.Error naming the variable (or --redis-url), the
// value (its password redacted) and what is allowed.
func Connect(getenv func(string) string, redisURL string) (redis.UniversalClient, error) {
	r := config.RedisEnv(getenv)
	if redisURL != "" {
		r.RedisURL = redisURL
	}
	c, err := r.NewClient(config.NoRetries())
	if err == nil {
		return c, nil
	}
	if redisURL == "" {
		return nil, err
	}
	// The URL came from the flag: name the flag, not REDIS_URL. The value in
	// a config.Error is redacted already.
	var cerr *config.Error
	if errors.As(err, &cerr) && cerr.Var == "REDIS_URL" {
		return nil, &config.Error{Var: "--redis-url", Value: cerr.Value, Allowed: cerr.Allowed}
	}
	return nil, fmt.Errorf("--redis-url: %w", err)
}
