package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clearEnv unsets every variable Config reads, so the host cannot leak in.
func clearEnv(t *testing.T) {
	for _, k := range []string{
		"REDIS_URL", "WORKER_STREAMS", "WORKER_GROUP", "WORKER_CONSUMER", "WORKER_GROUP_START",
		"WORKER_CONCURRENCY", "WORKER_FETCH_COUNT", "WORKER_BLOCK", "WORKER_MAX_ATTEMPTS",
		"WORKER_RETRY_BASE", "WORKER_RETRY_MAX", "WORKER_RETRY_IN_PLACE_MAX", "WORKER_HANDLER_TIMEOUT", "WORKER_SHUTDOWN_TIMEOUT",
		"WORKER_PROMOTE_INTERVAL", "WORKER_RECLAIM_MIN_IDLE", "WORKER_DEDUPE_WINDOW",
		"WORKER_RECLAIM_INTERVAL", "WORKER_RECLAIM_COUNT", "WORKER_CONSUMER_GONE_AFTER",
		"WORKER_HTTP_ADDR", "WORKER_PPROF", "LOG_LEVEL", "LOG_FORMAT", "WORKER_PARTITIONS", "WORKER_PARTITION_LEASE",
		"WORKER_RETENTION", "WORKER_TRIM_INTERVAL", "WORKER_DLQ_MAXLEN", "WORKER_DLQ_RETENTION", "WORKER_DELAYED_WARN",
		"REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY", "REDIS_CLUSTER_ADDRS",
		"REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_SCRIPTS", "WORKER_PRIORITY",
		"WORKER_SCHEDULE", "WORKER_SCHEDULE_STREAM", "WORKER_SCHEDULE_TZ", "WORKER_SCHEDULE_MISSED",
	} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), got); diff != "" {
		t.Errorf("Load() with an empty environment differs from Default() (-want +got):\n%s", diff)
	}
	host, _ := os.Hostname()
	if got.Consumer != host {
		t.Errorf("Consumer = %q, want the hostname %q", got.Consumer, host)
	}
	if got.MaxAttempts != 5 || got.Group != "workers" || got.HTTPAddr != ":8080" || got.RedisURL != "redis://127.0.0.1:6379/0" {
		t.Errorf("documented defaults changed: %+v", got)
	}
}

func TestLoadValues(t *testing.T) {
	clearEnv(t)
	t.Setenv("REDIS_URL", "rediss://u:secret@redis.example:6380/2")
	t.Setenv("WORKER_STREAMS", " orders , payments ")
	t.Setenv("WORKER_CONSUMER", "pod-7")
	t.Setenv("WORKER_CONCURRENCY", "16")
	t.Setenv("WORKER_RETRY_BASE", "250ms")
	t.Setenv("WORKER_DEDUPE_WINDOW", "1h")
	t.Setenv("LOG_FORMAT", "TEXT")
	t.Setenv("WORKER_GROUP_START", "latest")
	t.Setenv("WORKER_PARTITIONS", "16")
	t.Setenv("WORKER_PARTITION_LEASE", "30s")
	t.Setenv("WORKER_PPROF", "true")
	t.Setenv("WORKER_SCHEDULE", "report.requested 0 3 * * *; cleanup.run @every 5m;")
	t.Setenv("WORKER_SCHEDULE_STREAM", " jobs ")
	t.Setenv("WORKER_SCHEDULE_TZ", "Europe/Berlin")
	t.Setenv("WORKER_SCHEDULE_MISSED", "Skip")
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"orders", "payments"}, got.Streams); diff != "" {
		t.Errorf("Streams (-want +got):\n%s", diff)
	}
	if got.Consumer != "pod-7" || got.Concurrency != 16 || got.RetryBase != 250*time.Millisecond ||
		got.DedupeWindow != time.Hour || got.LogFormat != "text" || got.GroupStart != "latest" ||
		got.Partitions != 16 || got.PartitionLease != 30*time.Second || !got.PProf ||
		got.ScheduleTarget() != "jobs" || got.ScheduleLocation().String() != "Europe/Berlin" || got.ScheduleMissed != "skip" {
		t.Errorf("got %+v", got)
	}
	if es := got.ScheduleEntries(); len(es) != 2 || es[1].Name() != "cleanup.run @every 5m" {
		t.Errorf("ScheduleEntries = %v", es)
	}
	if d := Default(); d.ScheduleTarget() != "events" || d.ScheduleLocation() != time.UTC || d.ScheduleMissed != "latest" || len(d.ScheduleEntries()) != 0 {
		t.Errorf("schedule defaults: target %q, zone %s, missed %q", d.ScheduleTarget(), d.ScheduleLocation(), d.ScheduleMissed)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		want             string
	}{
		{"NotAnInteger", "WORKER_CONCURRENCY", "abc", `WORKER_CONCURRENCY="abc" is invalid: want an integer`},
		{"ZeroConcurrency", "WORKER_CONCURRENCY", "0", `WORKER_CONCURRENCY="0" is invalid: want an integer from 1 to 100000`},
		{"ZeroAttempts", "WORKER_MAX_ATTEMPTS", "0", `WORKER_MAX_ATTEMPTS="0" is invalid: want an integer from 1 to 1000`},
		{"NotADuration", "WORKER_RETRY_BASE", "soon", `WORKER_RETRY_BASE="soon" is invalid: want a Go duration such as 250ms, 30s or 5m`},
		{"DurationWithoutUnit", "WORKER_HANDLER_TIMEOUT", "30", `WORKER_HANDLER_TIMEOUT="30" is invalid: want a Go duration`},
		{"NegativeDuration", "WORKER_SHUTDOWN_TIMEOUT", "-1s", `WORKER_SHUTDOWN_TIMEOUT="-1s" is invalid: want a Go duration of at least 0s`},
		{"NegativeRetryInPlace", "WORKER_RETRY_IN_PLACE_MAX", "-5s", `WORKER_RETRY_IN_PLACE_MAX="-5s" is invalid: want a Go duration of at least 0s`},
		{"RetryMaxBelowBase", "WORKER_RETRY_MAX", "1ms", `WORKER_RETRY_MAX="1ms" is invalid: want a duration at least WORKER_RETRY_BASE (1s)`},
		{"BadScheme", "REDIS_URL", "http://localhost:6379", `REDIS_URL="http://localhost:6379" is invalid: want a URL such as redis://`},
		{"NoHost", "REDIS_URL", "redis://", `REDIS_URL="redis://" is invalid`},
		{"BadDB", "REDIS_URL", "redis://localhost:6379/x", `want a database number after the host`},
		{"PasswordRedacted", "REDIS_URL", "http://u:hunter2@localhost", `REDIS_URL="http://u:xxxxx@localhost"`},
		{"NoStreams", "WORKER_STREAMS", " , ", `WORKER_STREAMS="" is invalid: want a comma-separated list of one or more stream keys`},
		{"DuplicateStream", "WORKER_STREAMS", "a,a", `WORKER_STREAMS="a,a" is invalid: want each stream at most once`},
		{"DeadLetterStream", "WORKER_STREAMS", "orders,orders:dlq", `WORKER_STREAMS="orders,orders:dlq" is invalid: want stream keys that are not the runtime's own: "orders:dlq" is the dead-letter stream of "orders"`},
		{"DelayedSet", "WORKER_STREAMS", "{orders}:delayed", `WORKER_STREAMS="{orders}:delayed" is invalid: want stream keys that are not the runtime's own: "{orders}:delayed" is the sorted set of delayed and retried entries of "{orders}"`},
		{"DedupeMark", "WORKER_STREAMS", "orders:dedupe:42", `"orders:dedupe:42" is an idempotency mark of "orders"`},
		{"Heartbeat", "WORKER_STREAMS", "orders:alive:workers:pod-1", `"orders:alive:workers:pod-1" is a consumer heartbeat of "orders"`},
		{"PartitionOwner", "WORKER_STREAMS", "{orders:3}:owner:workers", `"{orders:3}:owner:workers" is the owner of partition "{orders:3}"`},
		{"PartitionMembers", "WORKER_STREAMS", "{orders}:members:workers", `"{orders}:members:workers" is the partition members of "orders"`},
		{"PauseState", "WORKER_STREAMS", "{orders}:paused", `"{orders}:paused" is the pause state of "{orders}"`},
		{"UniqueMark", "WORKER_STREAMS", "{orders}:unique:42", `"{orders}:unique:42" is a unique-publish mark of "{orders}"`},
		{"ScheduleHash", "WORKER_STREAMS", "{orders}:schedule", `"{orders}:schedule" is the periodic events' hash of "{orders}"`},
		{"ScheduleBadSpec", "WORKER_SCHEDULE", "report.requested 0 3 * * *; cleanup.run @every 5x", `WORKER_SCHEDULE="report.requested 0 3 * * *; cleanup.run @every 5x" is invalid: want entries TYPE SPEC separated by ';', but entry 2 "cleanup.run @every 5x": @every 5x: want a Go duration of at least 1s such as 30s, 5m or 1h`},
		{"ScheduleCronRange", "WORKER_SCHEDULE", "a 0 24 * * *", `entry 1 "a 0 24 * * *": end of range (24) above maximum (23): 24: want a 5-field cron expression`},
		{"ScheduleSixFields", "WORKER_SCHEDULE", "a 0 0 3 * * *", `entry 1 "a 0 0 3 * * *": expected exactly 5 fields, found 6`},
		{"ScheduleTwice", "WORKER_SCHEDULE", "a @hourly;a  @hourly", `entry 2 "a  @hourly": given twice`},
		{"ScheduleTZ", "WORKER_SCHEDULE_TZ", "Mars/Olympus", `WORKER_SCHEDULE_TZ="Mars/Olympus" is invalid: want an IANA time zone name such as UTC, Europe/Berlin`},
		{"ScheduleMissed", "WORKER_SCHEDULE_MISSED", "all", `WORKER_SCHEDULE_MISSED="all" is invalid: want latest (publish the latest missed tick once) or skip (publish none)`},
		{"ScheduleStreamIsDLQ", "WORKER_SCHEDULE_STREAM", "jobs:dlq", `WORKER_SCHEDULE_STREAM="jobs:dlq" is invalid: want a stream key that is not the runtime's own: it is the dead-letter stream of "jobs"`},
		{"GroupStart", "WORKER_GROUP_START", "middle", `WORKER_GROUP_START="middle" is invalid: want earliest or latest`},
		{"HTTPAddr", "WORKER_HTTP_ADDR", "8080", `WORKER_HTTP_ADDR="8080" is invalid: want host:port such as :8080`},
		{"HTTPPortOutOfRange", "WORKER_HTTP_ADDR", ":99999", `WORKER_HTTP_ADDR=":99999" is invalid: want host:port such as :8080 (every interface) or 127.0.0.1:9090 (one), with a port from 1 to 65535, or off`},
		{"HTTPPortZero", "WORKER_HTTP_ADDR", "127.0.0.1:0", `WORKER_HTTP_ADDR="127.0.0.1:0" is invalid: want host:port`},
		{"HTTPPortName", "WORKER_HTTP_ADDR", "localhost:http", `WORKER_HTTP_ADDR="localhost:http" is invalid: want host:port`},
		{"HTTPPortSigned", "WORKER_HTTP_ADDR", ":+80", `WORKER_HTTP_ADDR=":+80" is invalid: want host:port`},
		{"LogLevel", "LOG_LEVEL", "verbose", `LOG_LEVEL="verbose" is invalid: want debug, info, warn or error`},
		{"LogFormat", "LOG_FORMAT", "xml", `LOG_FORMAT="xml" is invalid: want json or text`},
		{"BlockTooLong", "WORKER_BLOCK", "5m", `WORKER_BLOCK="5m0s" is invalid: want a Go duration from 1ms to 1m`},
		{"MinIdleTooShort", "WORKER_RECLAIM_MIN_IDLE", "10ms", `WORKER_RECLAIM_MIN_IDLE="10ms" is invalid: want a Go duration of at least 1s`},
		{"ZeroPartitions", "WORKER_PARTITIONS", "0", `WORKER_PARTITIONS="0" is invalid: want an integer from 1 to 1024`},
		{"TooManyPartitions", "WORKER_PARTITIONS", "1025", `WORKER_PARTITIONS="1025" is invalid: want an integer from 1 to 1024`},
		{"PartitionsNotAnInteger", "WORKER_PARTITIONS", "many", `WORKER_PARTITIONS="many" is invalid: want an integer`},
		{"PartitionLeaseTooShort", "WORKER_PARTITION_LEASE", "500ms", `WORKER_PARTITION_LEASE="500ms" is invalid: want a Go duration of at least 1s`},
		{"RetentionNotADuration", "WORKER_RETENTION", "a day", `WORKER_RETENTION="a day" is invalid: want 0, a Go duration such as 24h, or unset`},
		{"RetentionNegative", "WORKER_RETENTION", "-1h", `WORKER_RETENTION="-1h0m0s" is invalid: want 0 (trim as soon as no group needs an entry), a Go duration such as 24h, or unset (no trimming)`},
		{"TrimIntervalTooShort", "WORKER_TRIM_INTERVAL", "1ms", `WORKER_TRIM_INTERVAL="1ms" is invalid: want a Go duration of at least 10ms`},
		{"DLQMaxLenNegative", "WORKER_DLQ_MAXLEN", "-5", `WORKER_DLQ_MAXLEN="-5" is invalid: want 0 (keep every dead letter) or a positive number of entries`},
		{"DLQMaxLenNotAnInteger", "WORKER_DLQ_MAXLEN", "lots", `WORKER_DLQ_MAXLEN="lots" is invalid: want an integer`},
		{"DLQRetentionNegative", "WORKER_DLQ_RETENTION", "-1s", `WORKER_DLQ_RETENTION="-1s" is invalid: want a Go duration of at least 0s`},
		{"DelayedWarnNegative", "WORKER_DELAYED_WARN", "-1", `WORKER_DELAYED_WARN="-1" is invalid: want 0 (off) or a positive number of entries`},
		{"PartitionLeaseTooLong", "WORKER_PARTITION_LEASE", "1h", `WORKER_PARTITION_LEASE="1h0m0s" is invalid: want a Go duration from 1s to 10m`},
		{"WeightZero", "WORKER_STREAMS", "sw:a=2,sw:b=0", `WORKER_STREAMS="sw:b=0" is invalid: want a stream key, or a stream key and =weight with a weight from 1 to 1000 (e.g. orders=3)`},
		{"WeightNegative", "WORKER_STREAMS", "a=-1", `WORKER_STREAMS="a=-1" is invalid: want a stream key, or a stream key and =weight`},
		{"WeightNotAnInteger", "WORKER_STREAMS", "a=1.5,b", `WORKER_STREAMS="a=1.5" is invalid`},
		{"WeightEmpty", "WORKER_STREAMS", "a=", `WORKER_STREAMS="a=" is invalid`},
		{"WeightTooLarge", "WORKER_STREAMS", "a=1001", `WORKER_STREAMS="a=1001" is invalid: want a stream key, or a stream key and =weight with a weight from 1 to 1000`},
		{"WeightNoStream", "WORKER_STREAMS", "=3", `WORKER_STREAMS="=3" is invalid`},
		{"WeightSigned", "WORKER_STREAMS", "a=+3", `WORKER_STREAMS="a=+3" is invalid`},
		{"WeightDuplicateStream", "WORKER_STREAMS", "a=2,a=3", `WORKER_STREAMS="a,a" is invalid: want each stream at most once`},
		{"Priority", "WORKER_PRIORITY", "fifo", `WORKER_PRIORITY="fifo" is invalid: want weighted (slots in proportion to WORKER_STREAMS weights) or strict (higher weights first)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tc.key, tc.value)
			_, err := Load()
			if err == nil {
				t.Fatalf("%s=%q accepted", tc.key, tc.value)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %q", err)
			}
		})
	}
}

func TestLoadWeights(t *testing.T) {
	for _, tc := range []struct {
		name, streams, priority string
		wantStreams             []string
		wantWeights             map[string]int
		prioritised             bool
	}{
		{"None", "a,b", "", []string{"a", "b"}, nil, false},
		{"Weighted", "sw:critical=6, sw:default = 3,sw:low", "", []string{"sw:critical", "sw:default", "sw:low"}, map[string]int{"sw:critical": 6, "sw:default": 3}, true},
		{"AllOne", "a=1,b=1", "", []string{"a", "b"}, map[string]int{"a": 1, "b": 1}, false},
		{"StrictWithoutWeights", "a,b", "STRICT", []string{"a", "b"}, nil, true},
		{"Braces", "{orders}=2", "", []string{"{orders}"}, map[string]int{"{orders}": 2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("WORKER_STREAMS", tc.streams)
			if tc.priority != "" {
				t.Setenv("WORKER_PRIORITY", tc.priority)
			}
			got, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantStreams, got.Streams); diff != "" {
				t.Errorf("Streams (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWeights, got.Weights); diff != "" {
				t.Errorf("Weights (-want +got):\n%s", diff)
			}
			if got.Prioritised() != tc.prioritised {
				t.Errorf("Prioritised() = %v, want %v", got.Prioritised(), tc.prioritised)
			}
			for _, s := range got.Streams {
				want := 1
				if w, ok := tc.wantWeights[s]; ok {
					want = w
				}
				if got.Weight(s) != want {
					t.Errorf("Weight(%q) = %d, want %d", s, got.Weight(s), want)
				}
			}
		})
	}
	t.Run("WeightOfUnlistedStream", func(t *testing.T) {
		c := Default()
		c.Weights = map[string]int{"other": 2}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `a weight only for a stream it lists ("other" is not one)`) {
			t.Errorf("Validate = %v", err)
		}
	})
}

// TestPartitionedStreamNames: a partition {S:i} is a hash tag of its own,
// so a partitioned stream is named without braces; unpartitioned, braces
// are how a stream picks its slot and stay allowed.
func TestPartitionedStreamNames(t *testing.T) {
	for _, tc := range []struct {
		name, streams, partitions string
		want                      string // "" when accepted
	}{
		{"PlainPartitioned", "orders,payments", "16", ""},
		{"BracesUnpartitioned", "{orders}", "1", ""},
		{"BracesPartitioned", "{orders}", "16", `WORKER_STREAMS="{orders}" is invalid: want stream names without braces when WORKER_PARTITIONS is above 1 (16)`},
		{"OneOfSeveral", "orders,pay{ments}", "2", `WORKER_STREAMS="orders,pay{ments}" is invalid: want stream names without braces`},
		{"ClosingBraceOnly", "orders}", "4", `name the stream orders, not {orders}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("WORKER_STREAMS", tc.streams)
			t.Setenv("WORKER_PARTITIONS", tc.partitions)
			_, err := Load()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("WORKER_STREAMS=%q with WORKER_PARTITIONS=%s accepted", tc.streams, tc.partitions)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestPartitionLeaseCoversReads: a worker stops reading a partition a third
// of the lease before it runs out, so a read's block must fit in that third.
func TestPartitionLeaseCoversReads(t *testing.T) {
	clearEnv(t)
	t.Setenv("WORKER_PARTITIONS", "4")
	t.Setenv("WORKER_PARTITION_LEASE", "3s")
	_, err := Load()
	want := `WORKER_PARTITION_LEASE="3s" is invalid: want a duration at least 3 × WORKER_BLOCK (6s)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %q", err, want)
	}
	t.Setenv("WORKER_BLOCK", "1s")
	if _, err := Load(); err != nil {
		t.Errorf("a 3s lease with a 1s block: %v", err)
	}
	t.Setenv("WORKER_PARTITIONS", "1")
	t.Setenv("WORKER_BLOCK", "2s")
	if _, err := Load(); err != nil {
		t.Errorf("the lease of unpartitioned streams is not checked: %v", err)
	}
}

// TestRetention: unset (or empty) trims nothing, 0 trims as soon as
// possible, a duration keeps that much.
func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  Retention
	}{
		{"", Retention{}},
		{" ", Retention{}},
		{"0", Retention{On: true}},
		{"24h", Retention{Duration: 24 * time.Hour, On: true}},
	} {
		clearEnv(t)
		t.Setenv("WORKER_RETENTION", tc.value)
		got, err := Load()
		if err != nil {
			t.Fatalf("WORKER_RETENTION=%q: %v", tc.value, err)
		}
		if got.Retention != tc.want {
			t.Errorf("WORKER_RETENTION=%q: got %+v, want %+v", tc.value, got.Retention, tc.want)
		}
	}
	clearEnv(t)
	t.Setenv("WORKER_DLQ_MAXLEN", "1000")
	t.Setenv("WORKER_DLQ_RETENTION", "72h")
	t.Setenv("WORKER_DELAYED_WARN", "0")
	t.Setenv("WORKER_TRIM_INTERVAL", "1s")
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.DLQMaxLen != 1000 || got.DLQRetention != 72*time.Hour || got.DelayedWarn != 0 || got.TrimInterval != time.Second {
		t.Errorf("got %+v", got)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw@h:1/0":     "redis://:xxxxx@h:1/0",
		"rediss://user:pw@h:1":  "rediss://user:xxxxx@h:1",
		"redis://h:1/0":         "redis://h:1/0",
		"redis://user@h:1":      "redis://user@h:1",
		"redis://u:p%40ss@h:1/": "redis://u:xxxxx@h:1/",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStreamNamesLikeRuntimeKeysButNotThem: only the exact shapes of the
// runtime's keys are refused as stream names.
func TestStreamNamesLikeRuntimeKeysButNotThem(t *testing.T) {
	for _, streams := range []string{"dlq", "delayed", "orders:dlqs", "orders:dlq:archive", "orders:delayed-jobs", "orders:owner:eu", "{orders}:members"} {
		t.Run(streams, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("WORKER_STREAMS", streams)
			if _, err := Load(); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}
