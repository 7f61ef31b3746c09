// Package config loads the worker's settings from the environment, fills the
// defaults in one place and validates every value, so that a bad setting stops
// the process at start with one line naming the variable, the value given and
// what is allowed.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/streamworker/streamworker/schedule"
	"github.com/streamworker/streamworker/wire"
)

// Config is everything the worker daemon reads from the environment. Each field
// names its variable and default; Load fills and validates them.
type Config struct {
	// Redis is the stream Redis: REDIS_URL (redis:// or rediss://; the
	// promoted RedisURL) and the TLS files REDIS_TLS_CA, REDIS_TLS_CERT and
	// REDIS_TLS_KEY. Default: redis://127.0.0.1:6379/0, no TLS files
	Redis

	// Streams are the stream keys this worker consumes, comma separated.
	// An entry may end in =weight, a positive integer (sw:critical=6): the
	// stream's share of the handler slots while several streams have work
	// waiting (Weights). Load strips the weights off. Default: events
	Streams []string `envconfig:"WORKER_STREAMS" default:"events"`
	// Weights are the weights given in WORKER_STREAMS, by stream; a stream
	// not in it has weight 1 (Weight). Empty, with Priority weighted, the
	// streams share the slots in the order they ask for them.
	Weights map[string]int `ignored:"true"`
	// Priority is how streams with work waiting share the handler slots:
	// weighted (each gets slots in proportion to its weight, none starves)
	// or strict (a stream is served only when every stream of a higher
	// weight has nothing to read; equal weights in WORKER_STREAMS order).
	// Default: weighted
	Priority string `envconfig:"WORKER_PRIORITY" default:"weighted"`
	// Group is the consumer group. Default: workers
	Group string `envconfig:"WORKER_GROUP" default:"workers"`
	// Consumer names this process inside the group; it must be stable across
	// restarts of the same replica (the pod name on Kubernetes) so that the
	// replica finds its own pending entries again. Default: the hostname.
	Consumer string `envconfig:"WORKER_CONSUMER"`
	// Partitions splits every stream of WORKER_STREAMS into this many
	// partitions, each a stream of its own named {S:i} (its own hash tag, so
	// the partitions spread over the nodes of a Redis Cluster). Producers
	// route an event by its partition key (the key field) to partition
	// FNV-1a(key) mod Partitions; each partition is read by one worker of
	// the group at a time, and messages with the same key run one at a
	// time, in order. 1 is not partitioned. Streams are then named without
	// braces. Default: 1
	Partitions int `envconfig:"WORKER_PARTITIONS" default:"1"`
	// PartitionLease is how long a worker's claim on a partition lasts
	// without renewal (it is renewed every sixth of it): the partitions of a
	// worker that died move to the others after at most this long. Only
	// with Partitions above 1. Default: 10s
	PartitionLease time.Duration `envconfig:"WORKER_PARTITION_LEASE" default:"10s"`
	// GroupStart is where a newly created group starts: earliest (the whole
	// stream, so events produced before the first worker ran are not
	// skipped) or latest (only new events). Default: earliest
	GroupStart string `envconfig:"WORKER_GROUP_START" default:"earliest"`

	// Concurrency is the number of handlers that run at once. Default: 64
	Concurrency int `envconfig:"WORKER_CONCURRENCY" default:"64"`
	// FetchCount caps the entries asked for in one XREADGROUP; a read never
	// asks for more than the free handler slots and ReadAhead's either.
	// Default: 256
	FetchCount int `envconfig:"WORKER_FETCH_COUNT" default:"256"`
	// ReadAhead is how many messages beyond the free handlers a read may
	// bring, to wait in memory for a handler, so that reads bring up to
	// FetchCount entries whatever the handler count. Only as many wait as
	// the handlers finish in about 20 ms (measured as they run), within
	// 1 MiB of entries: none for handlers of a second. One that waited a
	// lease period all the same is confirmed as this consumer's before it
	// runs. 0: reads ask for no more than the free handlers. Default: 256
	ReadAhead int `envconfig:"WORKER_READ_AHEAD" default:"256"`
	// MaxMessageBytes caps one entry: its field names and values together.
	// A larger entry is dead-lettered without running its handler (see
	// worker.ErrTooLarge), and reads ask for fewer entries while recent
	// ones are large, so that one read brings about 4 MiB (or one entry of
	// up to this size) rather than FetchCount large entries. Raise it with
	// the producer's payload cap. Default: 4194304 (4 MiB; the producer caps
	// data at 1 MiB)
	MaxMessageBytes int `envconfig:"WORKER_MAX_MESSAGE_BYTES" default:"4194304"`
	// Block is the BLOCK of one XREADGROUP. It is finite so that shutdown and
	// Redis failures are noticed promptly. Default: 2s
	Block time.Duration `envconfig:"WORKER_BLOCK" default:"2s"`

	// MaxAttempts is how many times a message is tried, the first try
	// included, before it is dead-lettered. Default: 5
	MaxAttempts int `envconfig:"WORKER_MAX_ATTEMPTS" default:"5"`
	// RetryBase is the backoff after the first failure; it doubles per
	// attempt, with jitter, up to RetryMax. Default: 1s
	RetryBase time.Duration `envconfig:"WORKER_RETRY_BASE" default:"1s"`
	// RetryMax caps the backoff. Default: 10m
	RetryMax time.Duration `envconfig:"WORKER_RETRY_MAX" default:"10m"`
	// RetryInPlaceMax is the longest backoff a retry waits out in the worker
	// whose attempt failed, its entry pending, instead of as a copy in the
	// stream's delayed set; only one due within a lease period
	// (WORKER_RECLAIM_MIN_IDLE/4) of its delivery does. 0: every retry goes
	// through the delayed set. Default: 5s
	RetryInPlaceMax time.Duration `envconfig:"WORKER_RETRY_IN_PLACE_MAX" default:"5s"`
	// HandlerTimeout bounds one handler call. Default: 30s
	HandlerTimeout time.Duration `envconfig:"WORKER_HANDLER_TIMEOUT" default:"30s"`
	// ShutdownTimeout is how long in-flight handlers may run after SIGTERM;
	// what is still running then is handed over to other consumers.
	// Default: 25s
	ShutdownTimeout time.Duration `envconfig:"WORKER_SHUTDOWN_TIMEOUT" default:"25s"`
	// PromoteInterval is how often due delayed and retry entries are moved
	// back into their stream; a retry this worker wrote, or the earliest
	// entry a pass left, is moved when it falls due (passes at least a tenth
	// of the interval apart). Default: 250ms
	PromoteInterval time.Duration `envconfig:"WORKER_PROMOTE_INTERVAL" default:"250ms"`
	// ReclaimMinIdle is how long an entry must sit unacknowledged before
	// another consumer may claim it. Default: 1m
	ReclaimMinIdle time.Duration `envconfig:"WORKER_RECLAIM_MIN_IDLE" default:"1m"`
	// ReclaimInterval is how often this consumer looks for entries other
	// consumers left idle past ReclaimMinIdle. Default: 10s
	ReclaimInterval time.Duration `envconfig:"WORKER_RECLAIM_INTERVAL" default:"10s"`
	// ReclaimCount is the most entries one XAUTOCLAIM call asks for; a call
	// never claims more than the free handler slots either. Default: 100
	ReclaimCount int `envconfig:"WORKER_RECLAIM_COUNT" default:"100"`
	// ConsumerGoneAfter is how long a consumer must have shown no sign of
	// life (no heartbeat) before it is deleted from the group; one with
	// pending entries is never deleted. Default: 1h
	ConsumerGoneAfter time.Duration `envconfig:"WORKER_CONSUMER_GONE_AFTER" default:"1h"`
	// DedupeWindow, when positive, skips a message whose id field was
	// processed successfully within the window. 0 turns it off. Default: 0
	DedupeWindow time.Duration `envconfig:"WORKER_DEDUPE_WINDOW" default:"0"`

	// Schedule publishes periodic events, each tick exactly once whatever
	// the number of workers: entries separated by ';', each "TYPE SPEC",
	// where SPEC is a 5-field cron expression, a descriptor (@hourly,
	// @daily, …) or @every DURATION (ticks on the multiples of DURATION
	// since the Unix epoch), e.g. "report.requested 0 3 * * *; cleanup.run
	// @every 5m". See package schedule. Default: none
	Schedule string `envconfig:"WORKER_SCHEDULE"`
	// ScheduleStream is the stream the periodic events go to. Default: the
	// first stream of WORKER_STREAMS
	ScheduleStream string `envconfig:"WORKER_SCHEDULE_STREAM"`
	// ScheduleTZ is the time zone of the cron entries (an IANA name such as
	// Europe/Berlin, or UTC or Local). Default: UTC
	ScheduleTZ string `envconfig:"WORKER_SCHEDULE_TZ" default:"UTC"`
	// ScheduleMissed is what happens to ticks that passed while no worker
	// ran (more than schedule.Grace ago, unpublished): latest publishes the
	// latest of them once; skip publishes none. Default: latest
	ScheduleMissed string `envconfig:"WORKER_SCHEDULE_MISSED" default:"latest"`
	// Retention, when set, makes the workers trim each stream (one worker
	// per stream at a time, the holder of its trim lease) up to the oldest
	// entry a group still needs or the entries older than Retention,
	// whichever is older: an entry a group has not read, or has read but
	// not acknowledged, is never trimmed. 0 trims as soon as no group needs
	// an entry. Unset, the workers trim nothing. Default: unset
	Retention Retention `envconfig:"WORKER_RETENTION"`
	// TrimInterval is the pause between trims when Retention is set.
	// Default: 10s
	TrimInterval time.Duration `envconfig:"WORKER_TRIM_INTERVAL" default:"10s"`
	// DLQMaxLen, when positive, keeps each dead-letter stream to about this
	// many entries, dropping the oldest as new ones are added. 0 keeps
	// every dead letter. Default: 0
	DLQMaxLen int64 `envconfig:"WORKER_DLQ_MAXLEN" default:"0"`
	// DLQRetention, when positive, drops dead letters older than this as
	// new ones are added. 0 keeps every dead letter. Default: 0
	DLQRetention time.Duration `envconfig:"WORKER_DLQ_RETENTION" default:"0"`
	// DelayedWarn is how many entries a stream's delayed set may hold before
	// the worker logs an error (once each time it grows past it) and sets
	// streamworker_delayed_over_bound. 0 turns the warning off.
	// Default: 1000000
	DelayedWarn int64 `envconfig:"WORKER_DELAYED_WARN" default:"1000000"`

	// HTTPAddr serves /healthz, /readyz and /metrics; "off" disables it.
	// Default: :8080
	HTTPAddr string `envconfig:"WORKER_HTTP_ADDR" default:":8080"`
	// PProf serves net/http/pprof's profiles under /debug/pprof/ on the
	// HTTP server of HTTPAddr. Off by default: the server is unauthenticated,
	// and a profile can be large and slow to take. Default: false
	PProf bool `envconfig:"WORKER_PPROF" default:"false"`

	// LogLevel is debug, info, warn or error. Default: info
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat is json or text. Default: json
	LogFormat string `envconfig:"LOG_FORMAT" default:"json"`
}

// Load reads the configuration from the process environment, fills the
// defaults and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return Config{}, bad(pe.KeyName, pe.Value, allowedFor(pe.TypeName))
		}
		return Config{}, err
	}
	if err := c.fill(); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Default returns the configuration with every default filled, as Load would
// with an empty environment.
func Default() Config {
	c := Config{
		Redis:             Redis{RedisURL: "redis://127.0.0.1:6379/0"},
		Streams:           []string{"events"},
		Priority:          PriorityWeighted,
		Group:             "workers",
		GroupStart:        "earliest",
		Partitions:        1,
		PartitionLease:    10 * time.Second,
		Concurrency:       64,
		FetchCount:        256,
		ReadAhead:         256,
		MaxMessageBytes:   4 << 20,
		Block:             2 * time.Second,
		MaxAttempts:       5,
		RetryBase:         time.Second,
		RetryMax:          10 * time.Minute,
		RetryInPlaceMax:   5 * time.Second,
		HandlerTimeout:    30 * time.Second,
		ShutdownTimeout:   25 * time.Second,
		PromoteInterval:   250 * time.Millisecond,
		ReclaimMinIdle:    time.Minute,
		ReclaimInterval:   10 * time.Second,
		ReclaimCount:      100,
		ConsumerGoneAfter: time.Hour,
		ScheduleTZ:        "UTC",
		ScheduleMissed:    "latest",
		TrimInterval:      10 * time.Second,
		DelayedWarn:       1000000,
		HTTPAddr:          ":8080",
		LogLevel:          "info",
		LogFormat:         "json",
	}
	_ = c.fill()
	return c
}

func (c *Config) fill() error {
	if c.Consumer == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return fmt.Errorf("WORKER_CONSUMER is not set and the hostname is unknown: set WORKER_CONSUMER to a name unique in the group")
		}
		c.Consumer = host
	}
	streams := c.Streams[:0]
	for _, s := range c.Streams {
		s = strings.TrimSpace(s)
		if i := strings.LastIndexByte(s, '='); i >= 0 {
			name, w := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
			n, err := strconv.Atoi(w)
			if err != nil || n < 1 || n > MaxWeight || w[0] == '+' || name == "" {
				return bad("WORKER_STREAMS", s, fmt.Sprintf("a stream key, or a stream key and =weight with a weight from 1 to %d (e.g. orders=3)", MaxWeight))
			}
			if c.Weights == nil {
				c.Weights = map[string]int{}
			}
			c.Weights[name] = n
			s = name
		}
		if s != "" {
			streams = append(streams, s)
		}
	}
	c.Streams = streams
	c.Priority = strings.ToLower(c.Priority)
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.LogFormat = strings.ToLower(c.LogFormat)
	c.GroupStart = strings.ToLower(c.GroupStart)
	if c.ScheduleMissed = strings.ToLower(strings.TrimSpace(c.ScheduleMissed)); c.ScheduleMissed == "" {
		c.ScheduleMissed = "latest"
	}
	c.ScheduleStream = strings.TrimSpace(c.ScheduleStream)
	return nil
}

// Validate checks every value and returns the first problem as one line that
// names the variable, the value and what is allowed.
func (c Config) Validate() error {
	if err := c.Redis.Validate(); err != nil {
		return err
	}
	if len(c.Streams) == 0 {
		return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "a comma-separated list of one or more stream keys")
	}
	seen := make(map[string]bool, len(c.Streams))
	for _, s := range c.Streams {
		if strings.ContainsAny(s, " \t\r\n") {
			return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "stream keys without whitespace")
		}
		if seen[s] {
			return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "each stream at most once")
		}
		seen[s] = true
		if what, of, ok := runtimeKey(s); ok {
			return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "stream keys that are not the runtime's own: "+
				strconv.Quote(s)+" is "+what+" "+strconv.Quote(of)+", kept by the worker beside that stream; name the stream itself")
		}
	}
	for s, w := range c.Weights {
		if !seen[s] {
			return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "a weight only for a stream it lists ("+strconv.Quote(s)+" is not one)")
		}
		if w < 1 || w > MaxWeight {
			return bad("WORKER_STREAMS", s+"="+strconv.Itoa(w), fmt.Sprintf("a weight from 1 to %d", MaxWeight))
		}
	}
	if c.Priority != "" && c.Priority != PriorityWeighted && c.Priority != PriorityStrict {
		return bad("WORKER_PRIORITY", c.Priority, "weighted (slots in proportion to WORKER_STREAMS weights) or strict (higher weights first)")
	}
	if strings.TrimSpace(c.Group) == "" {
		return bad("WORKER_GROUP", c.Group, "a non-empty group name")
	}
	if strings.TrimSpace(c.Consumer) == "" {
		return bad("WORKER_CONSUMER", c.Consumer, "a non-empty consumer name")
	}
	if c.GroupStart != "earliest" && c.GroupStart != "latest" {
		return bad("WORKER_GROUP_START", c.GroupStart, "earliest or latest")
	}
	for _, v := range []struct {
		name     string
		val, min int
		max      int
	}{
		{"WORKER_CONCURRENCY", c.Concurrency, 1, 100000},
		{"WORKER_FETCH_COUNT", c.FetchCount, 1, 100000},
		{"WORKER_READ_AHEAD", c.ReadAhead, 0, 100000},
		{"WORKER_MAX_MESSAGE_BYTES", c.MaxMessageBytes, 1024, 512 << 20},
		{"WORKER_MAX_ATTEMPTS", c.MaxAttempts, 1, 1000},
		{"WORKER_RECLAIM_COUNT", c.ReclaimCount, 1, 100000},
		{"WORKER_PARTITIONS", c.Partitions, 1, MaxPartitions},
	} {
		if v.val < v.min || v.val > v.max {
			return bad(v.name, strconv.Itoa(v.val), fmt.Sprintf("an integer from %d to %d", v.min, v.max))
		}
	}
	for _, v := range []struct {
		name     string
		val, min time.Duration
	}{
		{"WORKER_BLOCK", c.Block, time.Millisecond},
		{"WORKER_RETRY_BASE", c.RetryBase, time.Millisecond},
		{"WORKER_RETRY_MAX", c.RetryMax, time.Millisecond},
		{"WORKER_RETRY_IN_PLACE_MAX", c.RetryInPlaceMax, 0},
		{"WORKER_HANDLER_TIMEOUT", c.HandlerTimeout, time.Millisecond},
		{"WORKER_SHUTDOWN_TIMEOUT", c.ShutdownTimeout, 0},
		{"WORKER_PROMOTE_INTERVAL", c.PromoteInterval, time.Millisecond},
		{"WORKER_RECLAIM_MIN_IDLE", c.ReclaimMinIdle, time.Second},
		{"WORKER_RECLAIM_INTERVAL", c.ReclaimInterval, 10 * time.Millisecond},
		{"WORKER_CONSUMER_GONE_AFTER", c.ConsumerGoneAfter, time.Minute},
		{"WORKER_DEDUPE_WINDOW", c.DedupeWindow, 0},
		{"WORKER_PARTITION_LEASE", c.PartitionLease, time.Second},
		{"WORKER_TRIM_INTERVAL", c.TrimInterval, 10 * time.Millisecond},
		{"WORKER_DLQ_RETENTION", c.DLQRetention, 0},
	} {
		if v.val < v.min {
			return bad(v.name, v.val.String(), fmt.Sprintf("a Go duration of at least %s (e.g. 250ms, 30s)", v.min))
		}
	}
	if c.Retention.On && c.Retention.Duration < 0 {
		return bad("WORKER_RETENTION", c.Retention.Duration.String(), "0 (trim as soon as no group needs an entry), a Go duration such as 24h, or unset (no trimming)")
	}
	if c.DLQMaxLen < 0 {
		return bad("WORKER_DLQ_MAXLEN", strconv.FormatInt(c.DLQMaxLen, 10), "0 (keep every dead letter) or a positive number of entries")
	}
	if c.DelayedWarn < 0 {
		return bad("WORKER_DELAYED_WARN", strconv.FormatInt(c.DelayedWarn, 10), "0 (off) or a positive number of entries")
	}
	if c.Block > time.Minute {
		return bad("WORKER_BLOCK", c.Block.String(), "a Go duration from 1ms to 1m")
	}
	if c.Partitions > 1 {
		for _, s := range c.Streams {
			if strings.ContainsAny(s, "{}") {
				return bad("WORKER_STREAMS", strings.Join(c.Streams, ","), "stream names without braces when WORKER_PARTITIONS is above 1 ("+
					strconv.Itoa(c.Partitions)+"): each partition {S:i} is a hash tag of its own, so name the stream orders, not {orders}")
			}
		}
	}
	if c.Partitions > 1 && c.PartitionLease < 3*c.Block {
		return bad("WORKER_PARTITION_LEASE", c.PartitionLease.String(), "a duration at least 3 × WORKER_BLOCK ("+(3*c.Block).String()+"): a worker stops reading a partition a third of the lease before it runs out, and a read must return by then")
	}
	if c.PartitionLease > 10*time.Minute {
		return bad("WORKER_PARTITION_LEASE", c.PartitionLease.String(), "a Go duration from 1s to 10m")
	}
	if c.ConsumerGoneAfter < 3*c.ReclaimInterval {
		return bad("WORKER_CONSUMER_GONE_AFTER", c.ConsumerGoneAfter.String(), "a duration at least 3 × WORKER_RECLAIM_INTERVAL ("+(3*c.ReclaimInterval).String()+"), so live consumers' heartbeats never lapse")
	}
	if c.RetryMax < c.RetryBase {
		return bad("WORKER_RETRY_MAX", c.RetryMax.String(), "a duration at least WORKER_RETRY_BASE ("+c.RetryBase.String()+")")
	}
	if c.DedupeWindow > 0 && c.DedupeWindow < time.Millisecond {
		return bad("WORKER_DEDUPE_WINDOW", c.DedupeWindow.String(), "0 (off) or a Go duration of at least 1ms")
	}
	if err := c.validateSchedule(); err != nil {
		return err
	}
	if c.HTTPAddr != "off" {
		// Port 0 would listen on a port nobody knows to probe or scrape.
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || !validPort(port) {
			return bad("WORKER_HTTP_ADDR", c.HTTPAddr, "host:port such as :8080 (every interface) or 127.0.0.1:9090 (one), with a port from 1 to 65535, or off")
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("LOG_LEVEL", c.LogLevel, "debug, info, warn or error")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return bad("LOG_FORMAT", c.LogFormat, "json or text")
	}
	return nil
}

// validateSchedule checks WORKER_SCHEDULE and the variables that go with
// it; a bad entry is named with its position.
func (c Config) validateSchedule() error {
	if _, err := schedule.Parse(c.Schedule); err != nil {
		return bad("WORKER_SCHEDULE", c.Schedule, "entries TYPE SPEC separated by ';', but "+err.Error())
	}
	if _, err := time.LoadLocation(c.ScheduleTZ); err != nil {
		return bad("WORKER_SCHEDULE_TZ", c.ScheduleTZ, "an IANA time zone name such as UTC, Europe/Berlin or America/New_York")
	}
	if c.ScheduleMissed != schedule.MissedLatest && c.ScheduleMissed != schedule.MissedSkip {
		return bad("WORKER_SCHEDULE_MISSED", c.ScheduleMissed, "latest (publish the latest missed tick once) or skip (publish none)")
	}
	s := c.ScheduleStream
	if s == "" {
		return nil
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return bad("WORKER_SCHEDULE_STREAM", s, "a stream key without whitespace")
	}
	if what, of, ok := runtimeKey(s); ok {
		return bad("WORKER_SCHEDULE_STREAM", s, "a stream key that is not the runtime's own: it is "+what+" "+strconv.Quote(of))
	}
	if c.Partitions > 1 && strings.ContainsAny(s, "{}") {
		return bad("WORKER_SCHEDULE_STREAM", s, "a stream name without braces when WORKER_PARTITIONS is above 1: its events go to one of its partitions {S:i}")
	}
	if c.Partitions <= 1 && c.RedisMode() == ModeCluster && wire.Slot(s) != wire.Slot(wire.ScheduleKey(s)) {
		return bad("WORKER_SCHEDULE_STREAM", s, "a stream key with a hash tag on a Redis Cluster, such as {"+s+"}, so that the stream and its schedule hash share a slot")
	}
	return nil
}

// ScheduleEntries are the entries of WORKER_SCHEDULE, parsed (Validate has
// checked them).
func (c Config) ScheduleEntries() []schedule.Entry {
	es, _ := schedule.Parse(c.Schedule)
	return es
}

// ScheduleLocation is the time zone of WORKER_SCHEDULE_TZ; UTC when it is
// unset.
func (c Config) ScheduleLocation() *time.Location {
	if c.ScheduleTZ == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(c.ScheduleTZ)
	if err != nil {
		return time.UTC
	}
	return loc
}

// ScheduleTarget is the stream the periodic events go to:
// WORKER_SCHEDULE_STREAM, or the first stream of WORKER_STREAMS.
func (c Config) ScheduleTarget() string {
	if c.ScheduleStream != "" {
		return c.ScheduleStream
	}
	if len(c.Streams) > 0 {
		return c.Streams[0]
	}
	return ""
}

func validateRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return bad("REDIS_URL", Redact(raw), "a URL such as redis://host:6379/0 or rediss://user:password@host:6380/0")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return bad("REDIS_URL", Redact(raw), "a database number after the host, such as /0")
		}
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return bad("REDIS_URL", Redact(raw), "a port from 1 to 65535 after the host, such as redis://host:6379/0 (no port is 6379)")
	}
	return nil
}

// runtimeKeyWhat says what each of the runtime's own keys beside a stream
// is, for the error that refuses it as a stream (wire.ParseCompanion tells
// them apart). Consumed as a stream, one of them would fail every read with
// WRONGTYPE, or make a second consumer of the runtime's own entries.
var runtimeKeyWhat = map[wire.KeyKind]string{
	wire.KeyDelayed:          "the sorted set of delayed and retried entries of",
	wire.KeyDeadLetter:       "the dead-letter stream of",
	wire.KeyCancelled:        "the cancel marks of",
	wire.KeyDedupe:           "an idempotency mark of",
	wire.KeyHeartbeat:        "a consumer heartbeat of",
	wire.KeyPartitionOwner:   "the owner of partition",
	wire.KeyPartitionMembers: "the partition members of",
	wire.KeyPaused:           "the pause state of",
	wire.KeyUnique:           "a unique-publish mark of",
	wire.KeySchedule:         "the periodic events' hash of",
	wire.KeyTrimLease:        "the trim lease of",
}

// runtimeKey reports whether key has the shape of one of the runtime's own
// keys, what it is, and the stream it belongs to.
func runtimeKey(key string) (what, stream string, ok bool) {
	kind, stream, ok := wire.ParseCompanion(key)
	if !ok {
		return "", "", false
	}
	if what, ok = runtimeKeyWhat[kind]; !ok {
		what = "the " + kind.String() + " key of"
	}
	return what, stream, true
}

// validPort reports whether port is a decimal TCP port from 1 to 65535 (not
// a service name, which would depend on the image's /etc/services).
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535 && port[0] != '+'
}

// The values of WORKER_PRIORITY.
const (
	PriorityWeighted = "weighted"
	PriorityStrict   = "strict"
)

// MaxWeight is the largest weight of a stream in WORKER_STREAMS.
const MaxWeight = 1000

// Weight is the weight of stream, one of Streams: as given in
// WORKER_STREAMS, or 1.
func (c Config) Weight(stream string) int {
	if w, ok := c.Weights[stream]; ok {
		return w
	}
	return 1
}

// Prioritised reports whether the streams share the handler slots by
// weight or strict order rather than first come, first served: with
// Priority strict, or any weight other than 1 given.
func (c Config) Prioritised() bool {
	if c.Priority == PriorityStrict {
		return true
	}
	for _, w := range c.Weights {
		if w != 1 {
			return true
		}
	}
	return false
}

// MaxPartitions is the most partitions WORKER_PARTITIONS allows.
const MaxPartitions = 1024

// Redact returns a Redis URL with its password replaced, for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	if u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	return u.String()
}

// Error is a configuration problem; its text is the one line a user sees.
type Error struct {
	Var, Value, Allowed string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%q is invalid: want %s", e.Var, e.Value, e.Allowed)
}

func bad(name, value, allowed string) error {
	return &Error{Var: name, Value: value, Allowed: allowed}
}

func allowedFor(typeName string) string {
	switch typeName {
	case "int", "int64":
		return "an integer"
	case "Duration", "time.Duration":
		return "a Go duration such as 250ms, 30s or 5m"
	case "bool":
		return "true or false"
	case "Retention", "config.Retention":
		return "0, a Go duration such as 24h, or unset"
	default:
		return "a value of type " + typeName
	}
}

// Retention is WORKER_RETENTION: a duration, or unset. On is false when the
// variable is unset or empty.
type Retention struct {
	Duration time.Duration
	On       bool
}

// Decode implements envconfig.Decoder.
func (r *Retention) Decode(v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		*r = Retention{}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	*r = Retention{Duration: d, On: true}
	return nil
}

// String is the duration, or "unset".
func (r Retention) String() string {
	if !r.On {
		return "unset"
	}
	return r.Duration.String()
}
