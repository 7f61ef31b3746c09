package config_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// REDIS_SCRIPTS is eval (the default, also when empty) or functions, in any
// case; anything else stops the start naming the variable, the value and
// both choices, in Load, LoadRedis and NewClient alike.
func TestRedisScriptsSetting(t *testing.T) {
	for _, tc := range []struct {
		value, mode string
	}{
		{"", config.ScriptsEval},
		{"eval", config.ScriptsEval},
		{"functions", config.ScriptsFunctions},
		{" Functions ", config.ScriptsFunctions},
		{"fcall", ""},
		{"function", ""},
	} {
		r := config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisScripts: tc.value}
		err := r.Validate()
		if tc.mode != "" {
			if err != nil || r.ScriptsMode() != tc.mode {
				t.Errorf("REDIS_SCRIPTS=%q: mode %q, %v; want %q", tc.value, r.ScriptsMode(), err, tc.mode)
			}
			continue
		}
		var cerr *config.Error
		if !errors.As(err, &cerr) || cerr.Var != "REDIS_SCRIPTS" || cerr.Value != tc.value {
			t.Errorf("REDIS_SCRIPTS=%q: %v, want a config.Error naming REDIS_SCRIPTS and the value", tc.value, err)
			continue
		}
		for _, want := range []string{"eval", "functions", "+fcall", "streamctl scripts load"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("REDIS_SCRIPTS=%q: %q does not say %q", tc.value, err, want)
			}
		}
		if _, err := r.NewClient(); !errors.As(err, &cerr) {
			t.Errorf("NewClient with REDIS_SCRIPTS=%q: %v, want the same refusal", tc.value, err)
		}
	}
	for _, k := range redisVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("REDIS_SCRIPTS", "functions")
	r, err := config.LoadRedis()
	if err != nil || r.ScriptsMode() != config.ScriptsFunctions || config.RedisEnv(os.Getenv).ScriptsMode() != config.ScriptsFunctions {
		t.Errorf("LoadRedis and RedisEnv with REDIS_SCRIPTS=functions: %+v, %v", r, err)
	}
	if _, err := r.Options(); err == nil || !strings.Contains(err.Error(), "NewClient") {
		t.Errorf("Options with REDIS_SCRIPTS=functions = %v, want a refusal pointing at NewClient", err)
	}
	t.Setenv("REDIS_SCRIPTS", "lua")
	t.Setenv("WORKER_CONSUMER", "pod-0")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), `REDIS_SCRIPTS="lua" is invalid`) {
		t.Errorf("Load with REDIS_SCRIPTS=lua = %v", err)
	}
}

// With REDIS_SCRIPTS=functions the client NewClient builds runs scripts as
// FCALL, for a user that may not EVAL or EVALSHA, and says how to load a
// function that is missing; with eval it sends EVALSHA.
func TestNewClientScripts(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "fn", "on", ">pw", "~*", "-@all", "+fcall", "+get").Err(); err != nil {
		t.Fatal(err)
	}
	script := redis.NewScript(`return redis.call('GET', KEYS[1]) or 'none'`)
	url := "redis://fn:pw@" + srv.Addr + "/0"
	eval, err := config.Redis{RedisURL: url}.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	defer eval.Close()
	if err := script.Run(ctx, eval, []string{"k"}).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "evalsha") {
		t.Errorf("eval mode, user without EVALSHA: %v, want NOPERM for evalsha", err)
	}
	fn, err := config.Redis{RedisURL: url, RedisScripts: "functions"}.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	if err := script.Run(ctx, fn, []string{"k"}).Err(); !errors.Is(err, scriptfn.ErrNotLoaded) {
		t.Errorf("functions mode, nothing loaded: %v, want the not-loaded error", err)
	}
	if err := admin.FunctionLoad(ctx, scriptfn.Build(`return redis.call('GET', KEYS[1]) or 'none'`).Code).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := script.Run(ctx, fn, []string{"k"}).Text(); err != nil || v != "none" {
		t.Errorf("functions mode: %q %v, want none", v, err)
	}
}
