package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// ErrUniqueNeedsID is returned for a unique publish (PublishUnique, or an
// Item with UniqueFor) of an event without an ID: the ID is what makes two
// events the same one.
var ErrUniqueNeedsID = errors.New("unique publishing needs an event id")

// ErrUniqueDelayed is returned for an Item with both UniqueFor and Due: a
// unique publish appends now.
var ErrUniqueDelayed = errors.New("unique publishing appends now; it cannot be delayed")

// ErrUniqueWindow is returned for a unique window under 1ms.
var ErrUniqueWindow = errors.New("unique window too short")

// ErrUniqueSlot is returned on a Redis Cluster for a unique publish to a
// stream without a hash tag: its mark would be in another slot, where no
// script can check it with the append.
var ErrUniqueSlot = errors.New("unique publishing needs the stream's hash tag on a Redis Cluster")

// checkUnique refuses what a unique publish of e for window cannot do.
func checkUnique(e Event, window time.Duration) error {
	if e.ID == "" {
		return fmt.Errorf("%w: set Event.ID (producer send --id, or a line's id)", ErrUniqueNeedsID)
	}
	if window < time.Millisecond {
		return fmt.Errorf("%w: %s; want at least 1ms", ErrUniqueWindow, window)
	}
	return nil
}

// PublishUnique appends e to stream (or the partition Route picks) unless an
// event with the same ID was appended there by a unique publish within the
// last window. The check and the append are one Lua script, so of any number
// of producers racing with one ID exactly one adds its event. A duplicate is
// not an error: the Result says Duplicate, with the ID of the entry the
// first publish added. e.ID is required.
//
// The mark is wire.UniqueKey(stream, e.ID), beside the stream and in its hash
// tag; it is written only by unique publishes, so an event with the same ID
// sent by Publish neither sets nor is stopped by it.
func (p *Producer) PublishUnique(ctx context.Context, stream string, e Event, window time.Duration) (Result, error) {
	res, err := p.PublishItems(ctx, stream, []Item{{Event: e, UniqueFor: window}})
	if err != nil {
		var berr *BatchError
		if errors.As(err, &berr) {
			err = berr.Err
		}
		if len(res) == 1 {
			return res[0], err
		}
		return Result{}, err
	}
	return res[0], nil
}

// uniqueScript appends an event unless its unique mark exists, and sets the
// mark to the new entry's ID for the window. The mark is read before the
// append and written after it, in one script: nothing runs between, and an
// append that fails (a full Redis, a wrong type) leaves no mark behind.
//
// KEYS[1] -> the unique mark (wire.UniqueKey)
// KEYS[2] -> the stream
// ARGV[1] -> the window, ms
// ARGV[2] -> MAXLEN ~ of the append; 0 trims nothing
// ARGV[3…] -> the event's field/value pairs
// Returns {1, new entry ID} or {0, the entry ID in the mark}.
var uniqueScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[1])
if prev then return {0, prev} end
local id
if ARGV[2] ~= '0' then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
else
  id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
end
redis.call('SET', KEYS[1], id, 'PX', ARGV[1])
return {1, id}
`)

// checkUniqueSlot refuses, on a Redis Cluster, a unique publish whose mark
// would not share the stream's slot.
func (p *Producer) checkUniqueSlot(key, id string) error {
	if _, cluster := p.client.(*redis.ClusterClient); !cluster {
		return nil
	}
	if wire.Slot(wire.UniqueKey(key, id)) != wire.Slot(key) {
		return fmt.Errorf("%w: name the stream with one, such as {%s}, so that its mark %s shares its slot", ErrUniqueSlot, key, wire.UniqueKey(key, id))
	}
	return nil
}

// queueUnique queues the unique append of e to key on pipe. EVAL, not
// EVALSHA: a pipeline cannot fall back after NOSCRIPT. With
// REDIS_SCRIPTS=functions the client sends it as FCALL.
func (p *Producer) queueUnique(ctx context.Context, pipe redis.Pipeliner, key string, e Event, window time.Duration) *redis.Cmd {
	args := make([]any, 0, 2+2*e.pairs())
	args = append(args, window.Milliseconds(), p.opts.MaxLen)
	args = append(args, e.values()...)
	return uniqueScript.Eval(ctx, pipe, []string{wire.UniqueKey(key, e.ID), key}, args...)
}

// uniqueReply reads the script's reply: the entry ID, and whether it was a
// duplicate.
func uniqueReply(c *redis.Cmd) (id string, duplicate bool, err error) {
	v, err := c.Slice()
	if err != nil {
		return "", false, err
	}
	if len(v) != 2 {
		return "", false, fmt.Errorf("unique publish script returned %d values, want 2", len(v))
	}
	added, _ := v[0].(int64)
	id, _ = v[1].(string)
	return id, added == 0, nil
}
