package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// promoter moves due entries from each stream's delayed set (retries and the
// producer's delayed events) back into the stream, atomically and in bounded
// batches.
//
// A pass over every stream runs every interval. Between those, a pass runs
// for the streams with an entry known to fall due sooner: the earliest entry
// each pass leaves in a stream's set, and each retry this worker writes
// (due). So a retry due in 1 s runs after about 1 s, not after up to 1 s plus
// the interval. Such passes start at least minGap after the last one ended,
// so retries each due at a moment of their own cost a pass per gap, not one
// each. An entry another process adds (a producer's delayed event) is seen
// at the next pass over its stream, then moved on time.
type promoter struct {
	client   redis.UniversalClient
	streams  []string
	known    map[string]bool // streams, as a set
	interval time.Duration
	batch    int
	logger   *slog.Logger
	metrics  *Metrics
	beat     *beat
	now      func() time.Time

	wake chan struct{} // due learned of an entry sooner than those known
	mu   sync.Mutex
	next map[string]time.Time // per stream, the earliest entry known to fall due
}

// newPromoter returns a promoter for streams that runs every interval.
// metrics and live may be nil.
func newPromoter(client redis.UniversalClient, streams []string, interval time.Duration, logger *slog.Logger, metrics *Metrics, live *liveness) *promoter {
	p := &promoter{
		client: client, streams: streams, known: map[string]bool{}, interval: interval, batch: 500,
		logger: logger.With("component", "promote"), metrics: metrics, now: time.Now,
		wake: make(chan struct{}, 1), next: map[string]time.Time{},
	}
	for _, s := range streams {
		p.known[s] = true
	}
	if live != nil {
		p.beat = live.Register("promote")
	} else {
		p.beat = &beat{}
	}
	return p
}

// minGap is the least time between the end of a pass and the start of one
// for entries falling due: a tenth of the interval, at least a millisecond.
func (p *promoter) minGap() time.Duration { return max(p.interval/10, time.Millisecond) }

// due tells the promoter that an entry of stream falls due at t (a retry
// this worker has just written), so that a pass moves it then, not at the
// next interval.
func (p *promoter) due(stream string, t time.Time) {
	if p.learn(stream, t) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// learn records that an entry of stream falls due at t and reports whether
// that is sooner than what was known of it. Streams not promoted here are
// ignored.
func (p *promoter) learn(stream string, t time.Time) bool {
	if !p.known[stream] {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.next[stream]; ok && !t.Before(cur) {
		return false
	}
	p.next[stream] = t
	return true
}

// plan returns how long to wait before the next pass and whether it is a
// pass over every stream: an interval after the last such pass started
// (full), or sooner, when the earliest entry known falls due, but at least
// minGap after the last pass ended.
func (p *promoter) plan(full, ended time.Time) (wait time.Duration, all bool) {
	now := p.now()
	toFull := max(0, full.Add(p.interval).Sub(now)) // on the monotonic clock: a step of the wall clock moves it not
	var first time.Time
	p.mu.Lock()
	for _, t := range p.next {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	p.mu.Unlock()
	if first.IsZero() {
		return toFull, true
	}
	wait = max(0, first.Sub(now), ended.Add(p.minGap()).Sub(now))
	if wait >= toFull {
		return toFull, true
	}
	return wait, false
}

// dueNow takes the streams with an entry known to be due at now, forgetting
// what was known of them (the pass that moves it reports what it leaves).
// When none is (the wall clock stepped back), it takes every stream.
func (p *promoter) dueNow(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.streams {
		if t, ok := p.next[s]; ok && !t.After(now) {
			out = append(out, s)
			delete(p.next, s)
		}
	}
	if len(out) == 0 {
		clear(p.next)
		return p.streams
	}
	return out
}

// Run promotes every stream every interval, and the streams with an entry
// known to fall due sooner when it does, until ctx ends. A stream whose
// promotion fails is logged when it starts failing and when it works again;
// the other streams are promoted all the while.
func (p *promoter) Run(ctx context.Context) error {
	t := time.NewTimer(p.interval)
	defer t.Stop()
	failing := map[string]bool{}
	full := p.now() // when the last pass over every stream started
	streams := p.dueNow(full)
	for {
		p.beat.beat()
		moved, failed, left := p.runStreams(ctx, streams)
		for s, at := range left {
			p.learn(s, at)
		}
		if ctx.Err() == nil {
			for _, s := range streams {
				err, bad := failed[s]
				switch {
				case bad && !failing[s]:
					p.logger.Error("promoting delayed entries failed; will retry", "stream", s, "error", err)
				case !bad && failing[s]:
					p.logger.Info("promoting delayed entries works again", "stream", s)
				}
				failing[s] = bad
			}
			if moved > 0 {
				p.logger.Debug("promoted delayed entries", "count", moved)
			}
		}
		ended := p.now()
	wait:
		for {
			d, all := p.plan(full, ended)
			t.Reset(d)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if all {
					full = p.now()
					p.mu.Lock()
					clear(p.next)
					p.mu.Unlock()
					streams = p.streams
				} else {
					streams = p.dueNow(p.now())
				}
				break wait
			case <-p.wake: // a sooner entry: wait again, for it
			}
		}
	}
}

// runStreams moves every due entry of streams, a batch per script call, and
// returns, per stream, when the earliest entry left falls due (none: none is
// left). Each stream's failure is its own: it is counted and returned in
// failed, keyed by stream, and the other streams are promoted all the same,
// so one broken delayed key cannot hold up the rest.
func (p *promoter) runStreams(ctx context.Context, streams []string) (moved int, failed map[string]error, left map[string]time.Time) {
	for _, s := range streams {
		n, due, err := p.promoteStream(ctx, s)
		moved += n
		if !due.IsZero() {
			if left == nil {
				left = map[string]time.Time{}
			}
			left[s] = due
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil { // shutting down: not the stream's failure
			return moved, failed, left
		}
		if failed == nil {
			failed = map[string]error{}
		}
		failed[s] = err
		if p.metrics != nil {
			p.metrics.PromoteFailures.WithLabelValues(s).Inc()
			p.metrics.redisError(OpPromote)
		}
	}
	return moved, failed, left
}

// promoteStream moves every due entry of stream and returns when the
// earliest one left falls due (zero: none is left).
func (p *promoter) promoteStream(ctx context.Context, stream string) (int, time.Time, error) {
	total := 0
	for {
		n, dead, next, err := p.promoteBatch(ctx, stream)
		if err != nil {
			return total, time.Time{}, err
		}
		total += n
		if dead > 0 {
			p.logger.Warn("delayed entries that could not be promoted were dead-lettered as they were",
				"stream", stream, "count", dead, "dlq", wire.DeadLetterKey(stream))
		}
		if p.metrics != nil && n > dead {
			p.metrics.Promoted.WithLabelValues(stream).Add(float64(n - dead))
		}
		if n < p.batch {
			return total, next, nil
		}
	}
}

// promoteScript moves due envelopes from the delayed set into the stream.
// Anyone allowed to ZADD the set can put any member there, so the script
// validates each member before it writes anything for it: every length must
// be a canonical decimal that fits in what is left, which also makes each
// step of the decoder advance and bounds its loop by the member's length; the
// pairs must be whole and at most ARGV[3]. A member that fails goes to the
// dead-letter stream as it is, so one bad member cannot block the set.
//
// The decoder reads each length's digits with string.byte rather than a
// pattern match, string.sub and tonumber: for the short lengths of an
// envelope that takes a fifth less of Redis's time per envelope. It takes
// the first four bytes of each length in one call, which holds a length
// below 1000 and its ':': a call of Lua's is most of what decoding costs,
// and this makes it two calls a value (that one and string.sub), not one
// per digit and two more. The token is checked but not copied out, and the
// values go into one table reused for every member: a new table per member,
// resized five times on the way to nine values, and the token's string took
// about 8% of Redis's time per promoted entry (BenchmarkPromote).
//
// The members handled leave the set in one ZREM of them all, not one ZREM
// each (ARGV[2] stays far below the most values unpack passes). Each copy is
// written before its member is removed: a failing XADD removes only the
// members copied before it and returns its error, with its own member and
// the rest still in the set.
//
// KEYS[1] -> the stream's :delayed sorted set
// KEYS[2] -> the stream
// KEYS[3] -> the stream's :dlq stream
// ARGV[1] -> now, unix ms
// ARGV[2] -> most envelopes to move
// ARGV[3] -> most field/value pairs of an envelope (wire.MaxFields)
// ARGV[4] -> the dead letter's error field name (wire.FieldError)
// ARGV[5] -> the dead letter's envelope field name (wire.FieldEnvelope)
// ARGV[6] -> error for a member that does not decode
// ARGV[7] -> error for a member with more than ARGV[3] pairs
// ARGV[8] -> most digits of a length (wire.MaxLengthDigits)
// Returns {members moved, of which dead-lettered, the lowest score left (unix
// ms; -1 when the set is empty or that score is not one a due time can be)}.
var promoteScript = redis.NewScript(`
local maxValues, maxDigits = 2 * tonumber(ARGV[3]), tonumber(ARGV[8])
local byte, sub = string.byte, string.sub
-- decode writes the field/value strings of envelope s into out[1..n]
-- (what out holds past n is stale) and returns n; or nil and the reason s
-- is not an envelope.
local function decode(s, out)
  local k, pos, n, bad = 0, 1, #s, ARGV[6]
  while pos <= n do
    -- i: the ':' after the length's digits. The first four bytes, in one
    -- call, hold a length of up to three digits and its ':'.
    local a, b, c, d = byte(s, pos, pos + 3)
    local len, i
    if a == 48 then
      if b ~= 58 then return nil, bad end
      len, i = 0, pos + 1
    elseif a and a > 48 and a <= 57 then
      len = a - 48
      if b == 58 then
        i = pos + 1
      elseif b and b >= 48 and b <= 57 then
        len = len * 10 + b - 48
        if c == 58 then
          i = pos + 2
        elseif c and c >= 48 and c <= 57 then
          len, i = len * 10 + c - 48, pos + 3
          while d and d >= 48 and d <= 57 and i - pos < maxDigits do
            len, i = len * 10 + d - 48, i + 1
            d = byte(s, i)
          end
          if d ~= 58 then return nil, bad end
        else
          return nil, bad
        end
      else
        return nil, bad
      end
    else
      return nil, bad
    end
    if i + len > n then return nil, bad end
    if k > maxValues then return nil, ARGV[7] end
    k = k + 1
    if k > 1 then out[k - 1] = sub(s, i + 1, i + len) end -- the first value is the token
    pos = i + len + 1
  end
  if k < 3 or k % 2 ~= 1 then return nil, bad end
  return k - 1
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local dead, fields = 0, {}
for i, m in ipairs(due) do
  local nf, why = decode(m, fields)
  local r
  if nf then
    r = redis.pcall('XADD', KEYS[2], '*', unpack(fields, 1, nf))
  else
    r = redis.pcall('XADD', KEYS[3], '*', ARGV[4], why, ARGV[5], m)
    dead = dead + 1
  end
  if type(r) == 'table' and r.err then
    if i > 1 then redis.call('ZREM', KEYS[1], unpack(due, 1, i - 1)) end
    return r
  end
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local nextDue = tonumber(first[2])
if not nextDue or nextDue ~= nextDue or nextDue < 0 or nextDue > 1e15 then nextDue = -1 end
return {#due, dead, math.floor(nextDue)}
`)

// Errors of dead letters the promote script writes.
var (
	errNotEnvelope      = wire.ErrMalformedEnvelope.Error()
	errEnvelopeTooLarge = "delayed envelope has more than " + strconv.Itoa(wire.MaxFields) + " field/value pairs (wire.MaxFields)"
)

// promoteBatch moves up to p.batch due entries of stream and returns how
// many it moved, how many of those went to the dead-letter stream, and when
// the earliest entry left falls due (zero: none is left).
func (p *promoter) promoteBatch(ctx context.Context, stream string) (moved, dead int, next time.Time, err error) {
	r, err := promoteScript.Run(ctx, p.client,
		[]string{wire.DelayedKey(stream), stream, wire.DeadLetterKey(stream)},
		p.now().UnixMilli(), p.batch, wire.MaxFields, wire.FieldError, wire.FieldEnvelope,
		errNotEnvelope, errEnvelopeTooLarge, wire.MaxLengthDigits).Int64Slice()
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	if len(r) != 3 {
		return 0, 0, time.Time{}, fmt.Errorf("promote script returned %d values, want 3", len(r))
	}
	if r[2] >= 0 {
		next = time.UnixMilli(r[2])
	}
	return int(r[0]), int(r[1]), next, nil
}
