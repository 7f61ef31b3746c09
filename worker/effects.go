package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// Effects committed with the acknowledgement: a handler hands the runtime
// Redis commands (Message.Effects().Do) which, once it returns nil, run in
// one script with the entry's XACK — and only while the entry is still
// pending for this consumer. The effect and the acknowledgement happen
// together or not at all: a worker killed before the script ran left both
// undone, and the entry runs again elsewhere; a handler whose entry another
// consumer claimed meanwhile commits nothing, the new owner does.
//
// Prefer this over an idempotency key when the handler's effects are Redis
// writes in the stream's slot: there is no mark to keep, expire and check,
// and no window after which a late duplicate counts twice. Use idempotency
// keys (WORKER_DEDUPE_WINDOW, or a mark of the handler's own) for effects
// outside Redis, or in keys of other slots.

// ErrCrossSlot is returned by Effects.Do for a key outside the stream's hash
// slot: the script that runs the effects with the acknowledgement must touch
// keys of one slot on a Redis Cluster. Effects.Key builds keys in the slot.
var ErrCrossSlot = errors.New("effect key is not in the stream's hash slot")

// Effects collects the Redis commands a handler commits with its message's
// acknowledgement. Get it with Message.Effects; it is not safe for use by
// several goroutines at once.
type Effects struct {
	stream string
	cmds   []effect
	err    error // the first refused Do: nothing is committed
}

type effect struct {
	name string
	key  string
	args []any
}

// Effects returns the collector of m's effects, made on first use. A
// handler that adds commands and returns nil has them run, with m's
// acknowledgement, in one script; one that returns an error commits none of
// them.
func (m *Message) Effects() *Effects {
	if m.effects == nil {
		m.effects = &Effects{stream: m.Stream}
	}
	return m.effects
}

// Key returns a key named name in the stream's hash slot: {tag}:name, where
// tag is the stream's hash tag, or the stream key itself when it has none.
func (e *Effects) Key(name string) string {
	tag, ok := wire.HashTag(e.stream)
	if !ok {
		tag = e.stream
	}
	return "{" + tag + "}:" + name
}

// Do adds the command name key args... to the effects. key is the command's
// one key, which must be in the stream's hash slot (Key builds such keys):
// any other is refused now with ErrCrossSlot, on a single Redis as on a
// Cluster, so that a test finds what a Cluster would refuse. A refused Do
// makes the whole commit fail: the message is dead-lettered with the error
// rather than acknowledged without its effects.
//
// The commands run in order inside a Lua script: each must be one a script
// may call, with its key first, and should not fail on a well-formed key (a
// command that fails stops the script after the commands before it ran,
// without the acknowledgement, and those run again with the next delivery).
func (e *Effects) Do(name, key string, args ...any) error {
	var err error
	switch {
	case name == "" || strings.ContainsAny(name, " \t\r\n"):
		err = fmt.Errorf("effect command %q: want a Redis command name", name)
	case wire.Slot(key) != wire.Slot(e.stream):
		err = fmt.Errorf("%w: %q is in slot %d, the stream %q in slot %d; name the key with the stream's hash tag, e.g. %q",
			ErrCrossSlot, key, wire.Slot(key), e.stream, wire.Slot(e.stream), e.Key("balance"))
	}
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return err
	}
	e.cmds = append(e.cmds, effect{name: name, key: key, args: args})
	return nil
}

// Len is how many commands have been added.
func (e *Effects) Len() int { return len(e.cmds) }

// commitScript runs a message's effects and acknowledges it, if it is still
// pending for this consumer.
//
// KEYS[1] -> the stream
// KEYS[2..] -> the effects' keys, one per command, in order
// ARGV[1] -> group
// ARGV[2] -> consumer
// ARGV[3] -> entry ID
// ARGV[4..] -> per command: the number of its arguments after the key n, its
// name, then the n arguments
// Returns 1 when it ran the effects and acknowledged the entry, 0 when the
// entry was not pending for the consumer (and it did nothing).
//
// It calls the caller's commands: as a Redis function it gets no flags.
var commitScript = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then return 0 end
local i, k = 4, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local call = {ARGV[i + 1], KEYS[k]}
  for j = 1, n do call[#call + 1] = ARGV[i + 1 + j] end
  redis.call(unpack(call))
  i, k = i + 2 + n, k + 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// commitEffects runs m's effects with its acknowledgement (and its dedupe
// mark, with WORKER_DEDUPE_WINDOW on) and returns the outcome. complete
// calls it for a message that succeeded with effects.
func (r *engine) commitEffects(logCtx context.Context, m *Message) string {
	fx := m.effects
	keys := make([]string, 0, 1+len(fx.cmds)+1)
	keys = append(keys, m.Stream)
	args := make([]any, 0, 3+3*len(fx.cmds))
	args = append(args, r.cfg.Group, r.cfg.Consumer, m.ID)
	for _, c := range fx.cmds {
		keys = append(keys, c.key)
		args = append(args, len(c.args), c.name)
		args = append(args, c.args...)
	}
	if r.cfg.DedupeWindow > 0 && m.IdempotencyKey != "" {
		keys = append(keys, wire.DedupeKey(m.Stream, m.IdempotencyKey))
		args = append(args, 3, "SET", wire.DedupeMark, "PX", strconv.FormatInt(r.cfg.DedupeWindow.Milliseconds(), 10))
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	n, err := commitScript.Run(ctx, r.client, keys, args...).Int64()
	if err != nil {
		r.metrics.redisError(OpAck)
		r.logger.ErrorContext(logCtx, "could not commit the message's effects with its acknowledgement; it stays pending and runs again",
			"stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "effects", len(fx.cmds), "error", err)
		r.count(m, OutcomeUnrecorded)
		return OutcomeUnrecorded
	}
	if n == 0 {
		r.logger.WarnContext(logCtx, "effects not committed: the message is no longer pending for this consumer (another took it over, or it was acknowledged)",
			"stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "effects", len(fx.cmds))
		r.count(m, OutcomeLeaseLost)
		return OutcomeLeaseLost
	}
	r.count(m, OutcomeAcked)
	return OutcomeAcked
}
