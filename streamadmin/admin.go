// Package streamadmin inspects and repairs the streams a worker consumes:
// per stream its length, delayed and dead-letter counts, its consumer groups
// with pending entries, lag and consumers, and the dead-letter stream, whose
// entries it lists, replays into the stream or purges; it cancels events that
// have not run (Cancel) and sets a group back to process history again
// (Rewind). cmd/streamctl is its command line.
package streamadmin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

var (
	// ErrNoStream is returned for a stream that does not exist and has
	// nothing delayed or dead-lettered either.
	ErrNoStream = errors.New("no such stream")
	// ErrNoGroup is returned for a consumer group the stream does not have.
	ErrNoGroup = errors.New("no such consumer group")
	// ErrBadID is returned for a string that is not a full stream entry ID.
	ErrBadID = errors.New("not a stream entry ID")
	// ErrNotStream is returned for a key that holds another type.
	ErrNotStream = errors.New("not a stream")
	// ErrDeleted marks, in StreamStatus.Missing, a stream deleted (or
	// replaced by a key of another type) while Status or StatusAll read
	// it. It is a state, not a failure: nothing returns it as an error.
	ErrDeleted = errors.New("deleted while status ran")
)

// Admin inspects and repairs streams through one Redis client.
type Admin struct {
	client redis.UniversalClient
}

// New returns an Admin. Writes (replay, purge) are never resent by the
// client itself when it has MaxRetries -1 (producer.Connect's clients do).
func New(client redis.UniversalClient) *Admin {
	return &Admin{client: client}
}

// Streams returns every stream key in the database, sorted, without the
// dead-letter streams (keys ending in ":dlq"). On a Redis Cluster it scans
// every primary: a SCAN sees only the keys of the node it runs on.
func (a *Admin) Streams(ctx context.Context) ([]string, error) {
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.ScanType(ctx, 0, "*", 1000, "stream").Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			if strings.HasSuffix(k, wire.DeadLetterKey("")) {
				continue
			}
			mu.Lock()
			out = append(out, k)
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := a.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, a.client)
	}
	if err != nil {
		return nil, fmt.Errorf("listing streams: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// StreamStatus is the state of one stream.
type StreamStatus struct {
	Stream string
	// Length is XLEN of the stream.
	Length int64
	// Delayed is how many retries and delayed events wait in S:delayed.
	Delayed int64
	// Dead is the length of the dead-letter stream S:dlq.
	Dead int64
	// Memory is MEMORY USAGE of the stream, sampled (SAMPLES 5): bytes.
	Memory int64
	// Acked is an estimate of the entries every group is done with that
	// are still in the stream: those before the oldest entry any group
	// needs, which trimming (WORKER_RETENTION, streamctl trim) would
	// remove. Exact for a group with nothing pending (the stream's length
	// minus its lag); for a group with entries pending, the entries it was
	// delivered are taken as spread evenly over their IDs' times, from the
	// first entry to the last delivered, and those older than the oldest
	// pending entry are counted. 0 for a stream without groups; -1 when
	// Redis cannot tell a group's lag.
	Acked int64
	// AckedMemory is Memory × Acked / Length: the bytes trimming would
	// give back, estimated; -1 with Acked.
	AckedMemory int64
	// Groups are the stream's consumer groups, by name.
	Groups []GroupStatus
	// Paused are the pauses of the stream (streamctl pause), by group,
	// wire.PauseAllGroups first; for a partition, its logical stream's.
	Paused []Pause
	// Missing, when not nil, is why Length and Groups are not known: the
	// stream does not exist (ErrNoStream), the key holds another type
	// (ErrNotStream), or the stream was deleted while it was read
	// (ErrDeleted). The error names the key. Delayed and Dead are still
	// the counts of the companions.
	Missing error
}

// GroupStatus is the state of one consumer group.
type GroupStatus struct {
	Group string
	// Pending is how many entries were delivered and not acknowledged.
	Pending int64
	// Lag is how many entries are in the stream and not yet delivered to
	// the group; -1 when Redis cannot tell (after entries were deleted from
	// the middle of the stream).
	Lag int64
	// LastDeliveredID is the last entry ID delivered to the group.
	LastDeliveredID string
	// OldestPendingID is the lowest pending entry ID; empty when nothing is
	// pending.
	OldestPendingID string
	// OldestPendingAge is the age of that entry by its ID's timestamp, by
	// the Redis server's clock; 0 when nothing is pending.
	OldestPendingAge time.Duration
	// Consumers are the group's consumers, by name.
	Consumers []ConsumerStatus
	// Deleted: the group was destroyed while Status read it, after its
	// counts were read; its consumers and oldest pending entry are unknown.
	Deleted bool
	// Paused: the group's workers do not read the stream (a pause of the
	// group, or of every group).
	Paused bool
}

// ConsumerStatus is the state of one consumer of a group.
type ConsumerStatus struct {
	Consumer string
	// Pending is how many entries were delivered to it and not acknowledged.
	Pending int64
	// Idle is the time since it last read or claimed.
	Idle time.Duration
}

// Status returns the state of each stream, in the order given, in a few
// pipelined round trips: one row per stream, even with an error. A stream
// that does not exist and has nothing delayed or dead-lettered (ErrNoStream),
// or a key of another type (ErrNotStream), has its Missing set, and the
// error joins those of every such stream. A stream or group deleted between
// the round trips is marked in its row (Missing is ErrDeleted, or the
// group's Deleted) and is no error: another client may delete at any time.
func (a *Admin) Status(ctx context.Context, streams []string) ([]StreamStatus, error) {
	return a.status(ctx, streams, missingIsError)
}

// StatusAll returns the state of every stream Streams lists. A stream
// deleted between the listing and its reading is marked ErrDeleted in its
// row: it existed when listed.
func (a *Admin) StatusAll(ctx context.Context) ([]StreamStatus, error) {
	streams, err := a.Streams(ctx)
	if err != nil {
		return nil, err
	}
	return a.status(ctx, streams, missingIsDeleted)
}

// PartitionStatus returns the state of each of the n partitions of the
// logical stream stream ({stream:0} … {stream:n-1}, wire.PartitionStream),
// in order. A partition that does not exist yet (no event went there, and
// no worker has read it) is shown empty, without groups; a key of another
// type is an error, as in Status.
func (a *Admin) PartitionStatus(ctx context.Context, stream string, n int) ([]StreamStatus, error) {
	out, err := a.status(ctx, wire.PartitionStreams(stream, n), missingIsEmpty)
	if out != nil {
		keys := make([]string, len(out))
		for i := range keys {
			keys[i] = stream // the pause of a partitioned stream is its logical name's
		}
		if perr := a.readPauses(ctx, out, keys); perr != nil {
			return nil, perr
		}
	}
	return out, err
}

// missing is what status makes of a stream that is not there when first read.
type missing int

const (
	missingIsError   missing = iota // named by the caller: ErrNoStream, or ErrNotStream
	missingIsDeleted                // listed a moment ago: ErrDeleted
	missingIsEmpty                  // a partition no event has reached: empty
)

// status is Status, StatusAll and PartitionStatus; missing says what a
// stream that is not there at the first round trip is.
func (a *Admin) status(ctx context.Context, streams []string, miss missing) ([]StreamStatus, error) {
	out := make([]StreamStatus, len(streams))
	var problems []error
	// Round 1: what each key is, and the companion counts.
	pipe := a.client.Pipeline()
	now := pipe.Time(ctx)
	types := make([]*redis.StatusCmd, len(streams))
	delayed := make([]*redis.IntCmd, len(streams))
	dead := make([]*redis.IntCmd, len(streams))
	for i, s := range streams {
		types[i] = pipe.Type(ctx, s)
		delayed[i] = pipe.ZCard(ctx, wire.DelayedKey(s))
		dead[i] = pipe.XLen(ctx, wire.DeadLetterKey(s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading stream status: %w", firstErr(err, streams, types, delayed, dead))
	}
	// Round 2: length and groups of each stream that exists.
	pipe = a.client.Pipeline()
	lengths := make([]*redis.IntCmd, len(streams))
	groups := make([]*redis.XInfoGroupsCmd, len(streams))
	memory := make([]*redis.IntCmd, len(streams))
	infos := make([]*redis.XInfoStreamCmd, len(streams))
	for i, s := range streams {
		out[i] = StreamStatus{Stream: s, Delayed: delayed[i].Val(), Dead: dead[i].Val()}
		switch t := types[i].Val(); {
		case t == "stream":
			lengths[i] = pipe.XLen(ctx, s)
			groups[i] = pipe.XInfoGroups(ctx, s)
			memory[i] = pipe.MemoryUsage(ctx, s, 5)
			infos[i] = pipe.XInfoStream(ctx, s)
		case miss == missingIsDeleted:
			out[i].Missing = deleted(s)
		case t == "none" && (miss == missingIsEmpty || out[i].Delayed > 0 || out[i].Dead > 0):
		case t == "none":
			out[i].Missing = fmt.Errorf("%w: %q", ErrNoStream, s)
			problems = append(problems, out[i].Missing)
		default:
			out[i].Missing = fmt.Errorf("key %q is a %s, %w", s, t, ErrNotStream)
			problems = append(problems, out[i].Missing)
		}
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for i, s := range streams {
		if groups[i] == nil {
			continue
		}
		err := cmp.Or(lengths[i].Err(), groups[i].Err(), memory[i].Err(), infos[i].Err())
		switch {
		case vanished(err):
			out[i].Missing, groups[i] = deleted(s), nil
		case err != nil:
			return nil, fmt.Errorf("reading stream groups: %w", err)
		}
	}
	// Round 3: consumers and the oldest pending entry of each group.
	type groupCmds struct {
		consumers *redis.XInfoConsumersCmd
		pending   *redis.XPendingCmd
	}
	pipe = a.client.Pipeline()
	cmds := make([][]groupCmds, len(streams))
	for i, s := range streams {
		if groups[i] == nil {
			continue
		}
		out[i].Length = lengths[i].Val()
		for _, g := range groups[i].Val() {
			out[i].Groups = append(out[i].Groups, GroupStatus{
				Group: g.Name, Pending: g.Pending, Lag: g.Lag, LastDeliveredID: g.LastDeliveredID,
			})
			cmds[i] = append(cmds[i], groupCmds{
				consumers: pipe.XInfoConsumers(ctx, s, g.Name),
				pending:   pipe.XPending(ctx, s, g.Name),
			})
		}
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for i := range out {
		for j := range out[i].Groups {
			g, c := &out[i].Groups[j], cmds[i][j]
			cerr, perr := c.consumers.Err(), c.pending.Err()
			if errors.Is(perr, redis.Nil) {
				perr = nil
			}
			switch err := cmp.Or(cerr, perr); {
			case redis.HasErrorPrefix(cerr, "no such key"): // the stream
				out[i].Missing = deleted(out[i].Stream)
			case redis.HasErrorPrefix(err, "NOGROUP"): // the group
				g.Deleted = true
				continue
			case err != nil:
				return nil, fmt.Errorf("reading consumer groups: %w", err)
			}
			for _, c := range c.consumers.Val() {
				g.Consumers = append(g.Consumers, ConsumerStatus{Consumer: c.Name, Pending: c.Pending, Idle: c.Idle})
			}
			slices.SortFunc(g.Consumers, func(x, y ConsumerStatus) int { return strings.Compare(x.Consumer, y.Consumer) })
			if p := c.pending.Val(); p != nil && p.Count > 0 {
				g.OldestPendingID = p.Lower
				if ms, ok := idMillis(p.Lower); ok {
					g.OldestPendingAge = max(0, now.Val().Sub(time.UnixMilli(ms)))
				}
			}
		}
		if errors.Is(out[i].Missing, ErrDeleted) {
			out[i].Length, out[i].Groups = 0, nil
			continue
		}
		slices.SortFunc(out[i].Groups, func(x, y GroupStatus) int { return strings.Compare(x.Group, y.Group) })
		if infos[i] != nil {
			out[i].Memory = memory[i].Val()
			out[i].Acked, out[i].AckedMemory = acked(out[i], infos[i].Val().FirstEntry.ID)
		}
	}
	if err := a.readPauses(ctx, out, streams); err != nil {
		return nil, err
	}
	return out, errors.Join(problems...)
}

// acked estimates the entries of s that no group needs any more, and their
// bytes (StreamStatus.Acked); first is the stream's first entry ID.
func acked(s StreamStatus, first string) (entries, bytes int64) {
	if len(s.Groups) == 0 || s.Length == 0 {
		return 0, 0
	}
	entries = s.Length
	for _, g := range s.Groups {
		if g.Deleted {
			continue
		}
		if g.Lag < 0 {
			return -1, -1
		}
		delivered := max(0, s.Length-g.Lag)
		n := delivered
		if g.OldestPendingID != "" {
			n = max(0, delivered-g.Pending)
			f, ok1 := idMillis(first)
			p, ok2 := idMillis(g.OldestPendingID)
			l, ok3 := idMillis(g.LastDeliveredID)
			switch {
			case !ok1 || !ok2 || !ok3 || p <= f:
				n = 0
			case l > f:
				n = min(n, int64(float64(delivered)*float64(p-f)/float64(l-f+1)))
			}
		}
		entries = min(entries, n)
	}
	return entries, int64(float64(s.Memory) * float64(entries) / float64(s.Length))
}

// deleted is the Missing of a stream deleted while status read it.
func deleted(stream string) error { return fmt.Errorf("%q: %w", stream, ErrDeleted) }

// vanished reports whether err is what Redis answers for a stream deleted
// (or replaced by another type) since it was seen to be a stream.
func vanished(err error) bool {
	return redis.HasErrorPrefix(err, "no such key") || redis.HasErrorPrefix(err, "WRONGTYPE")
}

// firstErr returns the error of the first failed command of a status round,
// naming its key, or err when none failed.
func firstErr(err error, streams []string, types []*redis.StatusCmd, delayed, dead []*redis.IntCmd) error {
	for i, s := range streams {
		if e := types[i].Err(); e != nil {
			return e
		}
		if e := delayed[i].Err(); e != nil {
			return fmt.Errorf("%s: %w", wire.DelayedKey(s), e)
		}
		if e := dead[i].Err(); e != nil {
			return fmt.Errorf("%s: %w", wire.DeadLetterKey(s), e)
		}
	}
	return err
}

// groupNames returns the names of the stream's consumer groups.
func (a *Admin) groupNames(ctx context.Context, stream string) ([]string, error) {
	gs, err := a.client.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "no such key") {
			return nil, fmt.Errorf("%w: %q", ErrNoStream, stream)
		}
		return nil, fmt.Errorf("reading groups of %q: %w", stream, err)
	}
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	slices.Sort(names)
	return names, nil
}

var idPattern = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// CheckID returns an ErrBadID error unless id is a full entry ID
// (<milliseconds>-<sequence>). A bare millisecond time is refused: as a
// range bound it would match every entry of that millisecond.
func CheckID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %q (want <milliseconds>-<sequence>, e.g. 1700000000000-0)", ErrBadID, id)
	}
	if _, ok := idMillis(id); !ok {
		return fmt.Errorf("%w: %q is out of range", ErrBadID, id)
	}
	if _, err := strconv.ParseUint(id[strings.IndexByte(id, '-')+1:], 10, 64); err != nil {
		return fmt.Errorf("%w: %q is out of range", ErrBadID, id)
	}
	return nil
}

// idMillis returns the millisecond part of an entry ID.
func idMillis(id string) (int64, bool) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	return n, err == nil
}
