package scriptfn_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// fcallOnly starts a Redis with a user that may FCALL, and the commands the
// test scripts call, but neither EVAL nor EVALSHA, and returns an admin
// client and a client of that user with the hook.
func fcallOnly(t *testing.T) (admin *redis.Client, user *redis.Client) {
	t.Helper()
	srv := testredis.Start(t)
	admin = srv.Client(t)
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "fn", "on", ">pw", "~*", "resetchannels", "-@all",
		"+fcall", "+fcall_ro", "+get", "+set", "+incr", "+multi", "+exec", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	user = redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "fn", Password: "pw"})
	user.AddHook(scriptfn.Hook())
	t.Cleanup(func() { _ = user.Close() })
	return admin, user
}

var incrScript = redis.NewScript(`return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])`)

// TestHookRunsScriptsAsFunctions: with the hook, Script.Run, Eval and
// EvalSha run the script's function, alone, in a pipeline and in a
// transaction, for a user that may not EVAL or EVALSHA.
func TestHookRunsScriptsAsFunctions(t *testing.T) {
	t.Parallel()
	admin, c := fcallOnly(t)
	ctx := context.Background()
	if err := admin.FunctionLoad(ctx, scriptfn.Build(`return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])`).Code).Err(); err != nil {
		t.Fatal(err)
	}
	// Without the hook, the user is refused.
	plain := redis.NewClient(&redis.Options{Addr: c.Options().Addr, Username: "fn", Password: "pw"})
	defer plain.Close()
	if err := incrScript.Run(ctx, plain, []string{"k"}, 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("Run without the hook: %v, want NOPERM", err)
	}

	if n, err := incrScript.Run(ctx, c, []string{"k"}, 10).Int(); err != nil || n != 11 {
		t.Errorf("Run: %d %v, want 11", n, err)
	}
	if n, err := incrScript.Eval(ctx, c, []string{"k"}, 10).Int(); err != nil || n != 12 {
		t.Errorf("Eval: %d %v, want 12", n, err)
	}
	if n, err := incrScript.EvalShaRO(ctx, c, []string{"k"}, 0).Int(); err == nil {
		t.Errorf("EvalShaRO of a writing function: %d, want the server's refusal", n)
	}
	pipe := c.Pipeline()
	a := incrScript.Run(ctx, pipe, []string{"k"}, 0)
	b := incrScript.Eval(ctx, pipe, []string{"k"}, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if a.Val() != int64(3) || b.Val() != int64(4) {
		t.Errorf("pipeline: %v %v, want 3 4", a.Val(), b.Val())
	}
	var tx *redis.Cmd
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		tx = incrScript.Eval(ctx, p, []string{"k"}, 100)
		return nil
	}); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if tx.Val() != int64(105) {
		t.Errorf("transaction: %v, want 105", tx.Val())
	}
	// What the server saw was FCALL: the user could not have run anything
	// else, and the function's calls count.
	stats, err := admin.Do(ctx, "INFO", "commandstats").Text()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_fcall:calls=") || strings.Contains(stats, "cmdstat_eval:calls=") {
		t.Errorf("commandstats: want FCALL and no EVAL:\n%s", stats)
	}
}

// TestHookNotLoaded: a script whose function is not on the server fails
// with an error that says how to load it, and no EVAL is sent after the
// failed call (go-redis's NOSCRIPT fallback does not fire).
func TestHookNotLoaded(t *testing.T) {
	t.Parallel()
	admin, c := fcallOnly(t)
	ctx := context.Background()
	s := redis.NewScript(`return 'unloaded ` + testredis.RandomID() + `'`)
	check := func(what string, err error) {
		t.Helper()
		var nl *scriptfn.NotLoadedError
		if !errors.Is(err, scriptfn.ErrNotLoaded) || !errors.As(err, &nl) || nl.SHA != s.Hash() {
			t.Errorf("%s: %v, want a NotLoadedError for %s", what, err, s.Hash())
			return
		}
		for _, want := range []string{s.Hash(), "streamctl scripts load", "FUNCTION LOAD", "REDIS_SCRIPTS=functions"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", what, err, want)
			}
		}
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			t.Errorf("%s: %T is not a redis.Error", what, err)
		}
	}
	check("Run", s.Run(ctx, c, nil).Err())
	check("Eval", s.Eval(ctx, c, nil).Err())
	pipe := c.Pipeline()
	cmd := s.Run(ctx, pipe, nil)
	get := pipe.Get(ctx, "nothing")
	_, err := pipe.Exec(ctx)
	check("pipeline Exec", err)
	check("pipeline command", cmd.Err())
	if !errors.Is(get.Err(), redis.Nil) {
		t.Errorf("the pipeline's other command: %v, want redis.Nil", get.Err())
	}
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cmd = s.Eval(ctx, p, nil)
		return nil
	})
	check("transaction command", cmd.Err())
	stats, err := admin.Do(ctx, "INFO", "commandstats").Text()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stats, "cmdstat_eval") || strings.Contains(stats, "cmdstat_evalsha") {
		t.Errorf("EVAL or EVALSHA reached the server (rejected or not):\n%s", stats)
	}
}
