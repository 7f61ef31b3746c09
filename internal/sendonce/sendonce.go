// Package sendonce sends Redis commands that must not run twice. go-redis
// resends a command whose connection broke after it went out (up to
// MaxRetries times on one server, MaxRedirects on a Redis Cluster): when
// Redis had run it, the resent command runs a second time. A read of new
// entries then reads on past the entries the first one delivered, and a
// claim with a min-idle skips the entries the first one took; either way
// those entries stay pending, unseen, until a reclaim runs them after
// later ones. Sent once, the failure reaches the caller instead, which can
// tell what may have happened (Unsent).
package sendonce

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// Cmd is a command go-redis does not resend after its connection broke. It
// still follows a Redis Cluster's MOVED and ASK replies: nothing ran then.
type Cmd struct{ redis.Cmder }

// NoRetry tells go-redis not to resend the command.
func (*Cmd) NoRetry() bool { return true }

// Process sends cmd through c at most once; its result is cmd's.
func Process(ctx context.Context, c redis.UniversalClient, cmd redis.Cmder) error {
	return c.Process(ctx, &Cmd{cmd})
}

// Script runs s on keys and args as go-redis's Script.Run does — EVALSHA,
// then EVAL when Redis does not have the script (NOSCRIPT: nothing ran) —
// each command sent at most once.
func Script(ctx context.Context, c redis.UniversalClient, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.Run(ctx, scripter{c}, keys, args...)
}

// scripter is a client whose EVAL and EVALSHA are sent once.
type scripter struct{ redis.UniversalClient }

func (c scripter) Eval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	return c.once(ctx, "eval", src, keys, args)
}

func (c scripter) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return c.once(ctx, "evalsha", sha, keys, args)
}

func (c scripter) once(ctx context.Context, name, script string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, script, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	_ = Process(ctx, c.UniversalClient, cmd)
	return cmd
}

// Unsent reports whether a command's error shows that it never reached
// Redis: no connection could be had for it.
func Unsent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, redis.ErrPoolTimeout)
}
