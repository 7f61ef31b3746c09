package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// streamRow is one line of the overview: a stream, or a partitioned
// stream with its partitions folded into it.
type streamRow struct {
	Name       string // the stream key, or the logical name of a partitioned stream
	Partitions int    // how many partition streams were folded; 0 for a plain stream
	Length     int64
	Delayed    int64
	Dead       int64
	Pending    int64
	Lag        int64 // -1: Redis cannot tell for some group
	Groups     int
	Consumers  int
	Missing    string
	Rates      []float64 // entries added per second, oldest first
	// Paused is who the stream is paused for: "all groups", the paused
	// groups by name, or "" when it is not paused.
	Paused string
}

// partitionKey matches a partition stream key {S:i} (wire.PartitionStream).
var partitionKey = regexp.MustCompile(`^\{(.+):([0-9]+)\}$`)

// partitionOf returns the logical stream and index of a partition key.
func partitionOf(key string) (string, int, bool) {
	m := partitionKey.FindStringSubmatch(key)
	if m == nil {
		return "", 0, false
	}
	i, err := strconv.Atoi(m[2])
	return m[1], i, err == nil
}

// overview returns a row per stream, partitions folded, from the status
// of every stream (streamadmin.StatusAll: a SCAN and four pipelined round
// trips, whatever the number of streams, the pauses included), and one
// more pipelined round trip for the pauses of the partitioned streams,
// which are their logical names' (there are any).
func (s *Server) overview(ctx context.Context) ([]streamRow, error) {
	st, err := s.admin.StatusAll(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]streamRow, 0, len(st))
	index := map[string]int{}
	for _, ss := range st {
		name, partitioned := ss.Stream, false
		if logical, _, ok := partitionOf(ss.Stream); ok {
			name, partitioned = logical, true
		}
		i, seen := index[name]
		if !seen || !partitioned {
			i = len(rows)
			rows = append(rows, streamRow{Name: name})
			if partitioned {
				index[name] = i
			}
		}
		r := &rows[i]
		if partitioned {
			r.Partitions++
		}
		r.Length += ss.Length
		r.Delayed += ss.Delayed
		r.Dead += ss.Dead
		if ss.Missing != nil {
			r.Missing = missingNote(ss.Missing)
		}
		for _, g := range ss.Groups {
			r.Groups++
			r.Pending += g.Pending
			r.Consumers += len(g.Consumers)
			if g.Lag < 0 || r.Lag < 0 {
				r.Lag = -1
			} else {
				r.Lag += g.Lag
			}
		}
		r.Rates = addRates(r.Rates, s.sampler.rates(ss.Stream))
		if !partitioned {
			r.Paused = pauseNote(ss.Paused)
		}
	}
	if len(index) > 0 {
		pipe := s.client.Pipeline()
		cmds := make(map[int]*redis.MapStringStringCmd, len(index))
		for name, i := range index {
			cmds[i] = pipe.HGetAll(ctx, wire.PausedKey(name))
		}
		_, _ = pipe.Exec(ctx) // each command's error is looked at below
		for i, c := range cmds {
			switch err := c.Err(); {
			case redis.HasErrorPrefix(err, "WRONGTYPE"): // not a pause, as the workers read it
			case err != nil:
				return nil, fmt.Errorf("reading %s: %w", wire.PausedKey(rows[i].Name), err)
			}
			rows[i].Paused = pauseNote(pausesOf(c.Val()))
		}
	}
	slices.SortFunc(rows, func(a, b streamRow) int { return strings.Compare(a.Name, b.Name) })
	return rows, nil
}

// pausesOf reads a pause hash (wire.PausedKey) as streamadmin.Pauses does:
// by group, wire.PauseAllGroups first.
func pausesOf(m map[string]string) []streamadmin.Pause {
	out := make([]streamadmin.Pause, 0, len(m))
	for g, v := range m {
		p := streamadmin.Pause{Group: g}
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			p.Since = time.UnixMilli(ms)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y streamadmin.Pause) int {
		if (x.Group == wire.PauseAllGroups) != (y.Group == wire.PauseAllGroups) {
			if x.Group == wire.PauseAllGroups {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Group, y.Group)
	})
	return out
}

// pauseNote is the overview's word for pauses: "all groups" when every
// group is paused, else the paused groups; "" when none is.
func pauseNote(pauses []streamadmin.Pause) string {
	if len(pauses) == 0 {
		return ""
	}
	if pauses[0].Group == wire.PauseAllGroups {
		return "all groups"
	}
	names := make([]string, len(pauses))
	for i, p := range pauses {
		names[i] = p.Group
	}
	return strings.Join(names, ", ")
}

// addRates adds two rate series, aligned at their newest sample.
func addRates(a, b []float64) []float64 {
	if len(a) < len(b) {
		a, b = b, a
	}
	out := slices.Clone(a)
	for i := range b {
		out[len(out)-len(b)+i] += b[i]
	}
	return out
}

func missingNote(err error) string {
	switch {
	case errors.Is(err, streamadmin.ErrDeleted):
		return streamadmin.ErrDeleted.Error()
	case errors.Is(err, streamadmin.ErrNoStream):
		return streamadmin.ErrNoStream.Error()
	case errors.Is(err, streamadmin.ErrNotStream):
		return streamadmin.ErrNotStream.Error()
	}
	return err.Error()
}

// evictionWarning returns a warning when the Redis may evict keys under
// memory pressure (maxmemory-policy other than noeviction), as the worker
// warns at start; "" when it will not, or when the policy cannot be read.
func (s *Server) evictionWarning(ctx context.Context) string {
	res, err := s.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return ""
	}
	switch p := res["maxmemory-policy"]; {
	case p == "" || p == "noeviction":
		return ""
	case strings.HasPrefix(p, "volatile-"):
		return "maxmemory-policy is " + p + ": keys with a TTL (dedupe marks, heartbeats, partition leases) may be evicted under memory pressure. Prefer noeviction for the stream Redis."
	default:
		return "maxmemory-policy is " + p + ": under memory pressure Redis deletes streams and pending entries, and messages are lost. Set maxmemory-policy noeviction on the stream Redis."
	}
}

// streamPage is what the stream page shows.
type streamPage struct {
	Name       string
	Status     streamadmin.StreamStatus
	Partitions []partitionRow // of a partitioned stream's logical name
	Owners     []ownerRow     // of one partition: the owner per group
	Consumers  []consumerRow
	Pending    []streamadmin.GroupPending
	Delayed    []delayedRow
	DelayedAll int64
	Pause      pauseView
	Schedule   []streamadmin.ScheduleEntry // the periodic events published to the stream
	// ScheduleErr is why the schedule could not be read; "" when it was.
	ScheduleErr string
}

// pauseView is the pause state of the stream a page shows: of its logical
// stream for a partition, since the workers pause every partition together.
type pauseView struct {
	Stream string // the stream the pause controls change
	Pauses []streamadmin.Pause
	Groups []groupPause // the known groups, and whether each is paused
}

// All reports whether every group is paused.
func (v pauseView) All() bool {
	return len(v.Pauses) > 0 && v.Pauses[0].Group == wire.PauseAllGroups
}

type groupPause struct {
	Group  string
	Paused bool
}

type partitionRow struct {
	Stream string
	Status streamadmin.StreamStatus
	Owners []ownerRow
}

// Pending is the pending count of every group of the partition.
func (p partitionRow) Pending() int64 {
	var n int64
	for _, g := range p.Status.Groups {
		n += g.Pending
	}
	return n
}

type ownerRow struct {
	Group string
	Owner string // "" when no consumer owns it now
}

type consumerRow struct {
	Group    string
	Consumer streamadmin.ConsumerStatus
	// Heartbeat is how long ago the consumer last renewed its heartbeat
	// key: the key's lifetime (Options.HeartbeatTTL) less what is left of
	// it; -1 when there is none (the consumer is gone, or never wrote one).
	Heartbeat time.Duration
}

type delayedRow struct {
	Type    string
	Attempt string
	Due     time.Time
	Size    int
}

// pageLimit is how many pending entries, delayed entries and dead letters
// one page shows.
const pageLimit = 50

// loadStream reads the stream page of name: a stream, or the logical name
// of a partitioned stream (no braces, not a stream itself, with partition
// streams {name:i}).
func (s *Server) loadStream(ctx context.Context, name string) (*streamPage, error) {
	p, err := s.loadStreamState(ctx, name)
	if err != nil {
		return nil, err
	}
	return p, s.loadScheduling(ctx, p)
}

// loadScheduling fills the pause state of p and the periodic events
// published to it.
func (s *Server) loadScheduling(ctx context.Context, p *streamPage) error {
	p.Pause.Stream = p.Name
	var groups []string
	switch logical, _, ok := partitionOf(p.Name); {
	case ok:
		p.Pause.Stream = logical
		groups = groupNames(p.Status)
	case p.Partitions != nil:
		for _, pt := range p.Partitions {
			groups = append(groups, groupNames(pt.Status)...)
		}
	default:
		groups = groupNames(p.Status)
	}
	var err error
	if p.Pause.Pauses, err = s.admin.Pauses(ctx, p.Pause.Stream); err != nil {
		return err
	}
	for _, ps := range p.Pause.Pauses {
		if ps.Group != wire.PauseAllGroups {
			groups = append(groups, ps.Group)
		}
	}
	slices.Sort(groups)
	for _, g := range slices.Compact(groups) {
		p.Pause.Groups = append(p.Pause.Groups, groupPause{Group: g, Paused: streamadmin.PausedFor(p.Pause.Pauses, g)})
	}
	stream, partitions := p.Name, 1
	switch n := len(p.Partitions); {
	case n == 1:
		stream = p.Partitions[0].Stream
	case n > 1:
		for _, pt := range p.Partitions {
			if _, i, ok := partitionOf(pt.Stream); ok {
				partitions = max(partitions, i+1)
			}
		}
	}
	if p.Schedule, err = s.admin.Schedule(ctx, stream, partitions, s.now()); err != nil {
		p.ScheduleErr = err.Error() // a key of another type: shown, the rest of the page still is
	}
	return nil
}

func groupNames(st streamadmin.StreamStatus) []string {
	out := make([]string, len(st.Groups))
	for i, g := range st.Groups {
		out[i] = g.Group
	}
	return out
}

func (s *Server) loadStreamState(ctx context.Context, name string) (*streamPage, error) {
	p := &streamPage{Name: name}
	st, err := s.admin.Status(ctx, []string{name})
	if err != nil && !errors.Is(err, streamadmin.ErrNoStream) {
		return nil, err
	}
	if errors.Is(err, streamadmin.ErrNoStream) && !strings.ContainsAny(name, "{}") {
		return p, s.loadPartitions(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	p.Status = st[0]
	if p.Status.Missing != nil {
		return p, nil
	}
	// One round trip: heartbeats, owners, the delayed set.
	pipe := s.client.Pipeline()
	var beats []*redis.DurationCmd
	for _, g := range p.Status.Groups {
		for _, c := range g.Consumers {
			p.Consumers = append(p.Consumers, consumerRow{Group: g.Group, Consumer: c})
			beats = append(beats, pipe.PTTL(ctx, wire.HeartbeatKey(name, g.Group, c.Consumer)))
		}
	}
	var owners []*redis.StringCmd
	if _, _, ok := partitionOf(name); ok {
		for _, g := range p.Status.Groups {
			owners = append(owners, pipe.Get(ctx, wire.PartitionOwnerKey(name, g.Group)))
		}
	}
	delayed := pipe.ZRangeWithScores(ctx, wire.DelayedKey(name), 0, pageLimit-1)
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for i, b := range beats {
		p.Consumers[i].Heartbeat = -1
		if d, err := b.Result(); err == nil && d > 0 {
			p.Consumers[i].Heartbeat = max(0, s.beatTTL-d)
		}
	}
	for i, o := range owners {
		p.Owners = append(p.Owners, ownerRow{Group: p.Status.Groups[i].Group, Owner: o.Val()})
	}
	if err := delayed.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", wire.DelayedKey(name), err)
	}
	p.DelayedAll = p.Status.Delayed
	for _, z := range delayed.Val() {
		member, _ := z.Member.(string)
		row := delayedRow{Due: time.UnixMilli(int64(z.Score)), Size: len(member)}
		if _, fields, err := wire.DecodeEnvelope(member); err == nil {
			for i := 0; i+1 < len(fields); i += 2 {
				switch fields[i] {
				case wire.FieldType:
					row.Type = fields[i+1]
				case wire.FieldAttempt:
					row.Attempt = fields[i+1]
				}
			}
		}
		p.Delayed = append(p.Delayed, row)
	}
	if len(p.Status.Groups) > 0 {
		if p.Pending, err = s.admin.Pending(ctx, name, "", pageLimit); err != nil && !errors.Is(err, streamadmin.ErrNoStream) {
			return nil, err
		}
	}
	return p, nil
}

// loadPartitions fills p with the partitions of the logical stream p.Name,
// found among every stream as status finds them, and the owner of each per
// group; ErrNoStream when it has none.
func (s *Server) loadPartitions(ctx context.Context, p *streamPage) error {
	all, err := s.admin.Streams(ctx)
	if err != nil {
		return err
	}
	type part struct {
		key string
		i   int
	}
	var parts []part
	for _, k := range all {
		if logical, i, ok := partitionOf(k); ok && logical == p.Name {
			parts = append(parts, part{k, i})
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("%w: %q", streamadmin.ErrNoStream, p.Name)
	}
	slices.SortFunc(parts, func(a, b part) int { return cmp.Compare(a.i, b.i) })
	keys := make([]string, len(parts))
	for i, pt := range parts {
		keys[i] = pt.key
	}
	st, err := s.admin.Status(ctx, keys)
	if st == nil { // a partition deleted since it was listed is a row, not an error
		return err
	}
	pipe := s.client.Pipeline()
	owners := make([][]*redis.StringCmd, len(st))
	for i, ps := range st {
		for _, g := range ps.Groups {
			owners[i] = append(owners[i], pipe.Get(ctx, wire.PartitionOwnerKey(ps.Stream, g.Group)))
		}
	}
	_, _ = pipe.Exec(ctx) // a missing owner is redis.Nil: no owner
	for i, ps := range st {
		row := partitionRow{Stream: ps.Stream, Status: ps}
		for j, g := range ps.Groups {
			row.Owners = append(row.Owners, ownerRow{Group: g.Group, Owner: owners[i][j].Val()})
		}
		p.Partitions = append(p.Partitions, row)
	}
	return nil
}
