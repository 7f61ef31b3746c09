package streamadmin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// PendingEntry is one entry delivered to a consumer and not acknowledged.
type PendingEntry struct {
	ID       string
	Consumer string
	// Idle is the time since it was last delivered.
	Idle time.Duration
	// Deliveries is how many times it was delivered.
	Deliveries int64
	// Type is the entry's type field; empty when Deleted.
	Type string
	// Deleted is true when the entry is pending but no longer in the stream
	// (trimmed or deleted); the worker acknowledges such IDs when it claims
	// them.
	Deleted bool
}

// GroupPending is the pending entries of one group.
type GroupPending struct {
	Group string
	// Total is how many entries of the group are pending; Entries holds at
	// most the limit asked for, lowest IDs first.
	Total   int64
	Entries []PendingEntry
}

// Pending returns up to limit pending entries of group on stream, or of
// every group when group is empty, lowest IDs first.
func (a *Admin) Pending(ctx context.Context, stream, group string, limit int64) ([]GroupPending, error) {
	groups := []string{group}
	if group == "" {
		var err error
		if groups, err = a.groupNames(ctx, stream); err != nil {
			return nil, err
		}
	}
	pipe := a.client.Pipeline()
	sums := make([]*redis.XPendingCmd, len(groups))
	exts := make([]*redis.XPendingExtCmd, len(groups))
	for i, g := range groups {
		sums[i] = pipe.XPending(ctx, stream, g)
		exts[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: g, Start: "-", End: "+", Count: limit})
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	out := make([]GroupPending, len(groups))
	for i, g := range groups {
		if err := sums[i].Err(); err != nil {
			return nil, a.groupErr(ctx, stream, g, err)
		}
		if err := exts[i].Err(); err != nil {
			return nil, a.groupErr(ctx, stream, g, err)
		}
		out[i] = GroupPending{Group: g, Total: sums[i].Val().Count}
		for _, p := range exts[i].Val() {
			out[i].Entries = append(out[i].Entries, PendingEntry{ID: p.ID, Consumer: p.Consumer, Idle: p.Idle, Deliveries: p.RetryCount})
		}
	}
	if err := a.fillTypes(ctx, stream, out); err != nil {
		return nil, err
	}
	return out, nil
}

// fillTypes reads the type field of every pending entry in one round trip.
func (a *Admin) fillTypes(ctx context.Context, stream string, groups []GroupPending) error {
	pipe := a.client.Pipeline()
	var cmds []*redis.XMessageSliceCmd
	for _, g := range groups {
		for _, e := range g.Entries {
			cmds = append(cmds, pipe.XRange(ctx, stream, e.ID, e.ID))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reading pending entries of %q: %w", stream, err)
	}
	n := 0
	for gi := range groups {
		for ei := range groups[gi].Entries {
			e := &groups[gi].Entries[ei]
			msgs := cmds[n].Val()
			n++
			if len(msgs) == 0 {
				e.Deleted = true
				continue
			}
			e.Type, _ = msgs[0].Values[wire.FieldType].(string)
		}
	}
	return nil
}

// groupErr turns a NOGROUP reply into ErrNoGroup naming the groups there are.
func (a *Admin) groupErr(ctx context.Context, stream, group string, err error) error {
	if !redis.HasErrorPrefix(err, "NOGROUP") && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("reading pending entries of %q group %q: %w", stream, group, err)
	}
	names, gerr := a.groupNames(ctx, stream)
	if gerr != nil {
		return gerr
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: stream %q has no consumer groups", ErrNoGroup, stream)
	}
	return fmt.Errorf("%w: stream %q has no group %q (it has: %s)", ErrNoGroup, stream, group, strings.Join(names, ", "))
}
