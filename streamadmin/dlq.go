package streamadmin

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/worker"
)

// DeadLetter is one entry of a dead-letter stream: the original fields plus
// those the runtime adds (worker.FieldError, FieldAttempts, FieldOriginID,
// FieldFailedAt, FieldGroup, FieldConsumer).
type DeadLetter struct {
	ID     string
	Fields map[string]string
}

// DeadLetters returns up to limit entries of stream's dead-letter stream,
// oldest first, and its length.
func (a *Admin) DeadLetters(ctx context.Context, stream string, limit int64) ([]DeadLetter, int64, error) {
	key := worker.DeadLetterKey(stream)
	pipe := a.client.Pipeline()
	n := pipe.XLen(ctx, key)
	r := pipe.XRangeN(ctx, key, "-", "+", limit)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	out := make([]DeadLetter, len(r.Val()))
	for i, m := range r.Val() {
		out[i] = DeadLetter{ID: m.ID, Fields: make(map[string]string, len(m.Values))}
		for k, v := range m.Values {
			out[i].Fields[k] = fmt.Sprint(v)
		}
	}
	return out, n.Val(), nil
}

// ReplayOutcome is what became of one dead letter asked to be replayed.
type ReplayOutcome int

const (
	// Replayed: the entry is back in the stream and gone from the DLQ.
	Replayed ReplayOutcome = iota
	// NotFound: no entry with that ID is in the DLQ.
	NotFound
	// NoType: the entry has no type field and stays in the DLQ; the worker
	// would only dead-letter it again.
	NoType
)

func (o ReplayOutcome) String() string {
	switch o {
	case Replayed:
		return "replayed"
	case NotFound:
		return "not in the dead-letter stream"
	case NoType:
		return "has no type field; left in the dead-letter stream"
	}
	return "ReplayOutcome(" + strconv.Itoa(int(o)) + ")"
}

// ReplayResult is the outcome for one dead-letter ID.
type ReplayResult struct {
	// ID is the dead-letter entry ID.
	ID      string
	Outcome ReplayOutcome
	// NewID is the entry ID of the copy in the stream, when Replayed.
	NewID string
}

// replayBatch is how many dead letters one script call moves.
const replayBatch = 100

// Replay moves the dead letters with the given IDs back into stream, each
// atomically, without the runtime's dead-letter fields and with its attempt
// count reset; see replayScript. Every ID is checked with CheckID first.
func (a *Admin) Replay(ctx context.Context, stream string, ids []string) ([]ReplayResult, error) {
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return nil, err
		}
	}
	out := make([]ReplayResult, 0, len(ids))
	for start := 0; start < len(ids); start += replayBatch {
		batch := ids[start:min(start+replayBatch, len(ids))]
		res, err := a.replay(ctx, stream, batch)
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ReplayAll replays every dead letter of stream that was there when it
// started; entries dead-lettered meanwhile, such as replayed ones that fail
// again, stay for another run. It returns how many were replayed and the IDs
// left behind for having no type.
func (a *Admin) ReplayAll(ctx context.Context, stream string) (int, []string, error) {
	key := worker.DeadLetterKey(stream)
	last, err := a.lastID(ctx, key)
	if err != nil || last == "" {
		return 0, nil, err
	}
	var replayed int
	var noType []string
	from := "-"
	for {
		msgs, err := a.client.XRangeN(ctx, key, from, last, replayBatch).Result()
		if err != nil {
			return replayed, noType, fmt.Errorf("reading %s: %w", key, err)
		}
		if len(msgs) == 0 {
			return replayed, noType, nil
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		res, err := a.replay(ctx, stream, ids)
		for _, r := range res {
			switch r.Outcome {
			case Replayed:
				replayed++
			case NoType:
				noType = append(noType, r.ID)
			}
		}
		if err != nil {
			return replayed, noType, err
		}
		from = "(" + ids[len(ids)-1]
	}
}

func (a *Admin) replay(ctx context.Context, stream string, ids []string) ([]ReplayResult, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	key := worker.DeadLetterKey(stream)
	reply, err := replayScript.Run(ctx, a.client, []string{key, stream}, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("replaying %s into %s: %w", key, stream, err)
	}
	if len(reply) != len(ids) {
		return nil, fmt.Errorf("replaying %s: script returned %d results for %d IDs", key, len(reply), len(ids))
	}
	out := make([]ReplayResult, len(ids))
	for i, v := range reply {
		out[i] = ReplayResult{ID: ids[i]}
		switch v := v.(type) {
		case string:
			out[i].Outcome, out[i].NewID = Replayed, v
		case int64:
			out[i].Outcome = NotFound
			if v == -1 {
				out[i].Outcome = NoType
			}
		default:
			return nil, fmt.Errorf("replaying %s: unexpected script result %T", key, v)
		}
	}
	return out, nil
}

// Purge deletes the dead letters with the given IDs from stream's DLQ for
// good and returns the IDs that were not there. Every ID is checked with
// CheckID first.
func (a *Admin) Purge(ctx context.Context, stream string, ids []string) (deleted int64, missing []string, err error) {
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return 0, nil, err
		}
	}
	key := worker.DeadLetterKey(stream)
	pipe := a.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XDel(ctx, key, id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, nil, fmt.Errorf("deleting from %s: %w", key, err)
	}
	for i, c := range cmds {
		if c.Val() == 0 {
			missing = append(missing, ids[i])
		}
		deleted += c.Val()
	}
	return deleted, missing, nil
}

// PurgeAll deletes every dead letter of stream that is there when it starts
// (entries dead-lettered meanwhile stay) and returns how many it deleted.
func (a *Admin) PurgeAll(ctx context.Context, stream string) (int64, error) {
	key := worker.DeadLetterKey(stream)
	last, err := a.lastID(ctx, key)
	if err != nil || last == "" {
		return 0, err
	}
	// XTRIM MINID removes the entries below the threshold: everything up to
	// and including last.
	n, err := a.client.XTrimMinID(ctx, key, nextID(last)).Result()
	if err != nil {
		return 0, fmt.Errorf("trimming %s: %w", key, err)
	}
	return n, nil
}

// lastID returns the newest entry ID of a stream, "" when it is empty.
func (a *Admin) lastID(ctx context.Context, key string) (string, error) {
	msgs, err := a.client.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// nextID returns the smallest entry ID greater than id.
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	s, _ := strconv.ParseUint(seq, 10, 64)
	if s == ^uint64(0) {
		m, _ := strconv.ParseUint(ms, 10, 64)
		return strconv.FormatUint(m+1, 10) + "-0"
	}
	return ms + "-" + strconv.FormatUint(s+1, 10)
}
