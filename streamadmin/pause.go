package streamadmin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// Pausing a stream: the hash wire.PausedKey of a stream (the logical name of
// a partitioned one) holds a field per group whose workers must not read it,
// or wire.PauseAllGroups for every group, valued with when it was paused
// (unix ms). Workers poll it every half WORKER_BLOCK.

// Pause pauses stream for group, or for every group when group is empty
// or wire.PauseAllGroups, as of now. It reports whether the stream was
// already paused for that group (the time of that pause is then kept).
func (a *Admin) Pause(ctx context.Context, stream, group string) (already bool, err error) {
	if group == "" {
		group = wire.PauseAllGroups
	}
	added, err := a.client.HSetNX(ctx, wire.PausedKey(stream), group, strconv.FormatInt(time.Now().UnixMilli(), 10)).Result()
	if err != nil {
		return false, fmt.Errorf("pausing %q: %w", stream, err)
	}
	return !added, nil
}

// Resume ends the pause of stream for group, or every pause of stream when
// group is empty. It returns the pauses that still hold for group (a pause
// of every group outlives the resume of one) and whether there was one to
// end.
func (a *Admin) Resume(ctx context.Context, stream, group string) (still []Pause, ended bool, err error) {
	key := wire.PausedKey(stream)
	var n int64
	if group == "" {
		n, err = a.client.Del(ctx, key).Result()
	} else {
		n, err = a.client.HDel(ctx, key, group).Result()
	}
	if err != nil {
		return nil, false, fmt.Errorf("resuming %q: %w", stream, err)
	}
	if group == "" || group == wire.PauseAllGroups {
		return nil, n > 0, nil
	}
	ps, err := a.Pauses(ctx, stream)
	if err != nil {
		return nil, n > 0, err
	}
	return ps, n > 0, nil
}

// Pause is one pause of a stream.
type Pause struct {
	// Group is the group paused, or wire.PauseAllGroups for every group.
	Group string
	// Since is when it was paused; zero when the value is not a time.
	Since time.Time
}

// Pauses returns the pauses of stream, by group (wire.PauseAllGroups first).
func (a *Admin) Pauses(ctx context.Context, stream string) ([]Pause, error) {
	m, err := a.client.HGetAll(ctx, wire.PausedKey(stream)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the pauses of %q: %w", stream, err)
	}
	return pausesOf(m), nil
}

func pausesOf(m map[string]string) []Pause {
	if len(m) == 0 {
		return nil
	}
	out := make([]Pause, 0, len(m))
	for g, v := range m {
		p := Pause{Group: g}
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			p.Since = time.UnixMilli(ms)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y Pause) int {
		switch {
		case x.Group == y.Group:
			return 0
		case x.Group == wire.PauseAllGroups:
			return -1
		case y.Group == wire.PauseAllGroups:
			return 1
		case x.Group < y.Group:
			return -1
		}
		return 1
	})
	return out
}

// PausedFor reports whether pauses stop group.
func PausedFor(pauses []Pause, group string) bool {
	for _, p := range pauses {
		if p.Group == group || p.Group == wire.PauseAllGroups {
			return true
		}
	}
	return false
}

// readPauses fills the Paused of each row, and the Paused of its groups,
// from the pause hashes of keys (one per row) in one pipelined round trip.
func (a *Admin) readPauses(ctx context.Context, out []StreamStatus, keys []string) error {
	pipe := a.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(out))
	for i := range out {
		cmds[i] = pipe.HGetAll(ctx, wire.PausedKey(keys[i]))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reading the pauses: %w", err)
	}
	for i := range out {
		out[i].Paused = pausesOf(cmds[i].Val())
		for j := range out[i].Groups {
			out[i].Groups[j].Paused = PausedFor(out[i].Paused, out[i].Groups[j].Group)
		}
	}
	return nil
}
