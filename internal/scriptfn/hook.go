package scriptfn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrNotLoaded is what a script whose library is not on the server fails
// with (errors.Is), through NotLoadedError.
var ErrNotLoaded = errors.New("script not loaded as a Redis function")

// NotLoadedError is the error of a script whose function is not on the
// server the command went to. It is a Redis reply (redis.Error): the server
// answered, nothing ran, and go-redis neither retries it nor falls back to
// EVAL, whose NOSCRIPT it does not resemble.
type NotLoadedError struct {
	// SHA is the script's SHA-1; its library is Name(SHA).
	SHA string
}

func (e *NotLoadedError) Error() string {
	return fmt.Sprintf("script %s is not loaded as a function (%s) on this Redis, and REDIS_SCRIPTS=functions runs scripts only as functions: "+
		"run `streamctl scripts load` once, with the same REDIS_* settings and REDIS_URL naming a user allowed FUNCTION LOAD "+
		"(the scripts user of deploy/redis/users.acl), after every upgrade that changes scripts and after adding a Cluster primary; "+
		"a script of your own is not among the ones it loads: load it as a function yourself, or use REDIS_SCRIPTS=eval",
		e.SHA, Name(e.SHA))
}

// RedisError marks the error as a Redis reply (redis.Error).
func (e *NotLoadedError) RedisError() {}

// Is makes errors.Is(err, ErrNotLoaded) true.
func (e *NotLoadedError) Is(target error) bool { return target == ErrNotLoaded }

// Hook returns the go-redis hook of REDIS_SCRIPTS=functions: every EVALSHA
// (and EVALSHA_RO) is sent as FCALL (FCALL_RO) of the script's function,
// every EVAL (EVAL_RO) too, by the SHA-1 of its source, so the client never
// sends Lua source and its user needs FCALL alone. A function the server
// does not have fails with a *NotLoadedError, in a pipeline or a
// transaction too; go-redis's Script.Run does not fall back to EVAL on it.
// Add it to a client with AddHook (config.Redis.NewClient does).
func Hook() redis.Hook { return hook{} }

type hook struct{}

func (hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		sha, ok := rewrite(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if notFound(err) {
			err = &NotLoadedError{SHA: sha}
			cmd.SetErr(err)
		}
		return err
	}
}

func (hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var shas map[redis.Cmder]string
		for _, cmd := range cmds {
			if sha, ok := rewrite(cmd); ok {
				if shas == nil {
					shas = map[redis.Cmder]string{}
				}
				shas[cmd] = sha
			}
		}
		err := next(ctx, cmds)
		if shas == nil {
			return err
		}
		var first error
		for _, cmd := range cmds {
			if sha, ok := shas[cmd]; ok && notFound(cmd.Err()) {
				cmd.SetErr(&NotLoadedError{SHA: sha})
			}
			if first == nil && cmd.Err() != nil {
				first = cmd.Err()
			}
		}
		if notFound(err) {
			err = first
		}
		return err
	}
}

// rewrite turns cmd, when it runs a script, into the FCALL of the script's
// function, in place, and returns the script's SHA-1.
func rewrite(cmd redis.Cmder) (string, bool) {
	args := cmd.Args()
	if len(args) < 3 {
		return "", false
	}
	name, _ := args[0].(string)
	var call string
	switch strings.ToLower(name) {
	case "evalsha", "eval":
		call = "fcall"
	case "evalsha_ro", "eval_ro":
		call = "fcall_ro"
	default:
		return "", false
	}
	payload, ok := args[1].(string)
	if !ok {
		return "", false
	}
	sha := strings.ToLower(payload)
	if !strings.HasPrefix(strings.ToLower(name), "evalsha") {
		sha = SHA1(payload)
	}
	args[0], args[1] = call, Name(sha)
	return sha, true
}

// notFound reports whether err is the server's reply to an FCALL of a
// function it does not have.
func notFound(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "Function not found")
}
