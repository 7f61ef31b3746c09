package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
)

// ErrStaleFence is returned by SetFenced when a write carries a fencing
// token lower than one the resource has already accepted: its writer lost
// the lock (it was paused past the TTL, say) and another holder wrote since.
var ErrStaleFence = errors.New("lock: stale fencing token")

// setFencedScript is the protected resource's half of fencing: it checks the
// writer's token against the highest it has accepted and writes in one step,
// so no stale writer can slip in between the check and the write.
//
// KEYS[1] -> the protected key
// KEYS[2] -> the highest fence accepted for it, keys.Sibling(KEYS[1], "fence", "seen")
// ARGV[1] -> the writer's fencing token
// ARGV[2] -> the value to set
// Returns 0 if written, or the higher fence already seen if refused.
var setFencedScript = redis.NewScript(`
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
local fence = tonumber(ARGV[1])
if fence < seen then
  return seen
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 0
`)

// SetFenced sets key to value on behalf of the lock holding with fencing
// token fence (Lock.Fence), unless a holding with a greater token has
// already written to key: then it returns an error matching ErrStaleFence
// and key keeps the newer value. A holder may write many times with one
// token. The highest token seen is kept beside key, in its hash slot.
//
// It is the pattern for any resource: store the highest token accepted with
// the data and refuse lower ones in the same atomic step. In SQL:
//
//	UPDATE accounts SET balance = $1, fence = $2 WHERE id = $3 AND fence <= $2
//
// and zero rows updated means a stale holder.
func SetFenced(ctx context.Context, rdb redis.Scripter, key string, value any, fence int64) error {
	if fence < 1 {
		return fmt.Errorf("lock: fencing token %d for %q: tokens start at 1", fence, key)
	}
	seen, err := setFencedScript.Run(ctx, rdb, []string{key, keys.Sibling(key, "fence", "seen")}, fence, value).Int64()
	if err != nil {
		return fmt.Errorf("lock: fenced write of %q: %w", key, err)
	}
	if seen != 0 {
		return fmt.Errorf("%w: %q refused token %d, already saw %d", ErrStaleFence, key, fence, seen)
	}
	return nil
}
