package worker

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// Cancelled entries: streamctl cancel marks entry IDs in a stream's
// wire.CancelledKey, and the runtime acknowledges a marked entry without
// running it, whichever way it arrives (read, own pending replay, reclaim,
// take-over). Looking each batch up in Redis would cost a round trip per
// batch on the hot path, so each stream's marks are kept here and brought up
// to date at most once per cancelPoll, on the dispatch path: one ZRANGEBYSCORE
// of the marks added since the newest one seen, which is empty almost always.
// A cancel thus takes effect within cancelPoll; an entry started before
// that, or before the cancel, runs. Marks older than wire.CancelRetention
// are forgotten here as they are trimmed in Redis.

// cancelPoll is how often a stream's marks are brought up to date.
const cancelPoll = time.Second

// cancelPage bounds one read of new marks; more are read in pages.
const cancelPage = 1000

// cancelMarks are the known marks of every stream, by stream.
type cancelMarks struct {
	mu      sync.Mutex
	streams map[string]*streamMarks
}

// streamMarks are one stream's marks. mu is held while they are brought up
// to date, so that one dispatch reads them and the others wait for it.
type streamMarks struct {
	mu      sync.Mutex
	checked time.Time        // when they were last read
	newest  int64            // the score (unix ms) of the newest mark read
	ids     map[string]int64 // entry ID -> when cancelled, unix ms
}

func (c *cancelMarks) of(stream string) *streamMarks {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams == nil {
		c.streams = map[string]*streamMarks{}
	}
	s := c.streams[stream]
	if s == nil {
		s = &streamMarks{ids: map[string]int64{}}
		c.streams[stream] = s
	}
	return s
}

// dropCancelled acknowledges, without running them, the messages of batch
// (all of one stream) whose entries are cancelled, counts them as
// OutcomeCancelled and returns the others.
func (r *engine) dropCancelled(ctx context.Context, batch []*Message) []*Message {
	if len(batch) == 0 {
		return batch
	}
	marks := r.cancels.of(batch[0].Stream)
	marks.mu.Lock()
	defer marks.mu.Unlock()
	if now := time.Now(); now.Sub(marks.checked) >= cancelPoll {
		r.refreshCancels(ctx, batch[0].Stream, marks, now)
	}
	if len(marks.ids) == 0 {
		return batch
	}
	out := batch[:0]
	for _, m := range batch {
		if _, ok := marks.ids[m.ID]; !ok {
			out = append(out, m)
			continue
		}
		r.logger.Info("message cancelled: acknowledged without running", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type))
		r.ack(ackReq{stream: m.Stream, id: m.ID, typ: m.Type, outcome: OutcomeCancelled})
	}
	return out
}

// refreshCancels reads the marks of stream added since the newest one seen
// (a mark is written with the time of the cancel, so the newest ones come
// last; marks of one millisecond are read again, which is harmless) and
// forgets those past the retention. On a Redis error it keeps what it knows
// and tries again after cancelPoll.
func (r *engine) refreshCancels(ctx context.Context, stream string, marks *streamMarks, now time.Time) {
	marks.checked = now
	oldest := now.Add(-wire.CancelRetention).UnixMilli()
	for id, at := range marks.ids {
		if at < oldest {
			delete(marks.ids, id)
		}
	}
	from := max(marks.newest, oldest)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	for offset := int64(0); ; offset += cancelPage {
		page, err := r.client.ZRangeByScoreWithScores(cctx, wire.CancelledKey(stream), &redis.ZRangeBy{
			Min: strconv.FormatInt(from, 10), Max: "+inf", Offset: offset, Count: cancelPage,
		}).Result()
		if err != nil {
			r.logger.Warn("could not read the cancelled entries; cancels made since the last read take effect later", "stream", stream, "error", err)
			return
		}
		for _, z := range page {
			id, _ := z.Member.(string)
			at := int64(z.Score)
			marks.ids[id] = at
			marks.newest = max(marks.newest, at)
		}
		if len(page) < cancelPage {
			return
		}
	}
}
