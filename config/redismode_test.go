package config_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testcerts"
	"github.com/streamworker/streamworker/internal/testredis"
)

// redisVars are every variable config.Redis reads.
var redisVars = []string{
	"REDIS_URL", "REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY",
	"REDIS_CLUSTER_ADDRS", "REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_SCRIPTS",
}

// Bad Cluster and Sentinel settings: each error names the variable, the
// value (never a password) and what is allowed; Config and NewClient refuse
// the same.
func TestRedisModeValidate(t *testing.T) {
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	seeds := []string{"10.0.0.1:6379", "10.0.0.2:6379"}
	sentinels := []string{"10.0.0.9:26379"}
	for _, tc := range []struct {
		name    string
		r       config.Redis
		wantVar string // "" for no error
		want    []string
	}{
		{name: "Cluster", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: seeds}},
		{name: "ClusterHostlessTLSURL", r: config.Redis{RedisURL: "rediss://worker:s3cret@/0", RedisTLSCA: certs.CA, RedisClusterAddrs: seeds}},
		{name: "ClusterSpacesAndTrailingComma", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{" 10.0.0.1:6379", " redis-1.example:6380 ", ""}}},
		{name: "ClusterIPv6", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"[::1]:7000"}}},
		{name: "Sentinel", r: config.Redis{RedisURL: "redis://:s3cret@/2", RedisSentinelAddrs: sentinels, RedisSentinelMaster: "mymaster", RedisSentinelPassword: "s3cret"}},
		{
			name: "ClusterAndSentinel", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: seeds, RedisSentinelAddrs: sentinels, RedisSentinelMaster: "mymaster"},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{`"10.0.0.1:6379,10.0.0.2:6379"`, "REDIS_SENTINEL_ADDRS", "not both"},
		},
		{
			name: "ClusterAndSentinelMaster", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: seeds, RedisSentinelMaster: "mymaster"},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{"REDIS_SENTINEL_MASTER", "not both"},
		},
		{
			name: "SentinelWithoutMaster", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisSentinelAddrs: sentinels},
			wantVar: "REDIS_SENTINEL_MASTER", want: []string{`REDIS_SENTINEL_MASTER=""`, "required with REDIS_SENTINEL_ADDRS"},
		},
		{
			name: "MasterWithoutSentinels", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisSentinelMaster: "mymaster"},
			wantVar: "REDIS_SENTINEL_ADDRS", want: []string{`REDIS_SENTINEL_MASTER="mymaster"`, "host:port"},
		},
		{
			name: "SentinelPasswordAlone", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisSentinelPassword: "s3cret"},
			wantVar: "REDIS_SENTINEL_PASSWORD", want: []string{`"xxxxx"`, "without REDIS_SENTINEL_ADDRS", "REDIS_URL"},
		},
		{
			name: "ClusterAddrWithoutPort", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"10.0.0.1:6379", "redis-1"}},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{`"10.0.0.1:6379,redis-1"`, `("redis-1" is not host:port)`, "redis-0:6379,redis-1:6379"},
		},
		{
			name: "ClusterAddrWithoutHost", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{":6379"}},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{`(":6379" is not host:port)`},
		},
		{
			name: "ClusterAddrBadPort", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"redis-0:http"}},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{`("redis-0:http" is not host:port)`},
		},
		{
			name: "ClusterAddrPortOutOfRange", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"redis-0:70000"}},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{`("redis-0:70000" is not host:port)`},
		},
		{
			name: "ClusterAddrIsAURL", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"redis://redis-0:6379"}},
			wantVar: "REDIS_CLUSTER_ADDRS", want: []string{"is not host:port"},
		},
		{
			name: "SentinelAddrWithoutPort", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisSentinelAddrs: []string{"sentinel-0"}, RedisSentinelMaster: "m"},
			wantVar: "REDIS_SENTINEL_ADDRS", want: []string{`("sentinel-0" is not host:port)`, "sentinel-0:26379,sentinel-1:26379"},
		},
		{
			name: "ClusterDatabase", r: config.Redis{RedisURL: "redis://worker:s3cret@/3", RedisClusterAddrs: seeds},
			wantVar: "REDIS_URL", want: []string{"redis://worker:xxxxx@/3", "only database 0"},
		},
		{
			name: "ClusterDatabaseQuery", r: config.Redis{RedisURL: "redis://127.0.0.1:6379?db=2", RedisClusterAddrs: seeds},
			wantVar: "REDIS_URL", want: []string{"only database 0"},
		},
		{
			name: "ClusterBadScheme", r: config.Redis{RedisURL: "http://worker:s3cret@x", RedisClusterAddrs: seeds},
			wantVar: "REDIS_URL", want: []string{"http://worker:xxxxx@x", "in cluster mode its host is not used"},
		},
		{
			name: "SentinelBadDatabase", r: config.Redis{RedisURL: "redis:///x", RedisSentinelAddrs: sentinels, RedisSentinelMaster: "m"},
			wantVar: "REDIS_URL", want: []string{"a database number"},
		},
		{
			name: "ClusterTLSFilesWithPlaintextURL", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisTLSCA: certs.CA, RedisClusterAddrs: seeds},
			wantVar: "REDIS_URL", want: []string{"a rediss:// URL", "REDIS_TLS_CA"},
		},
		{
			name: "SentinelSkipVerify", r: config.Redis{RedisURL: "rediss://@/0?skip_verify=true", RedisSentinelAddrs: sentinels, RedisSentinelMaster: "m"},
			wantVar: "REDIS_URL", want: []string{"cannot be turned off"},
		},
		{
			name: "SingleStillNeedsAHost", r: config.Redis{RedisURL: "redis://:s3cret@/0"},
			wantVar: "REDIS_URL", want: []string{"redis://:xxxxx@/0", "a URL such as redis://host:6379/0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				c, err := tc.r.NewClient()
				if err != nil {
					t.Fatalf("NewClient() = %v", err)
				}
				_ = c.Close()
				return
			}
			checkRefused(t, tc.r, err, tc.wantVar, tc.want)
		})
	}
}

func TestRedisModeAndTarget(t *testing.T) {
	for _, tc := range []struct {
		name             string
		r                config.Redis
		mode, wantTarget string
	}{
		{"Single", config.Redis{RedisURL: "rediss://worker:s3cret@redis:6380/0"}, config.ModeSingle, "rediss://worker:xxxxx@redis:6380/0"},
		{"Cluster", config.Redis{RedisURL: "rediss://worker:s3cret@/0", RedisClusterAddrs: []string{"a:1", " b:2"}}, config.ModeCluster, "a:1,b:2"},
		{"Sentinel", config.Redis{RedisURL: "redis://:s3cret@/0", RedisSentinelAddrs: []string{"s:26379"}, RedisSentinelMaster: "mymaster", RedisSentinelPassword: "s3cret"}, config.ModeSentinel, "mymaster via s:26379"},
		{"BlankListIsUnset", config.Redis{RedisURL: "redis://h:1/0", RedisClusterAddrs: []string{" ", ""}}, config.ModeSingle, "redis://h:1/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.RedisMode(); got != tc.mode {
				t.Errorf("RedisMode() = %q, want %q", got, tc.mode)
			}
			if got := tc.r.RedisTarget(); got != tc.wantTarget {
				t.Errorf("RedisTarget() = %q, want %q", got, tc.wantTarget)
			}
		})
	}
}

// The options of each mode carry REDIS_URL's credentials, TLS and query
// options, and the ClientOptions apply in every mode.
func TestRedisModeOptions(t *testing.T) {
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	t.Run("Cluster", func(t *testing.T) {
		r := config.Redis{
			RedisURL:          "rediss://worker:s3cret@ignored.example:1/0?dial_timeout=3s&pool_size=7",
			RedisTLSCA:        certs.CA,
			RedisClusterAddrs: []string{" 10.0.0.1:6379", "10.0.0.2:6379 "},
		}
		c, err := r.NewClient(config.NoRetries(), config.MinPoolSize(50))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cc, ok := c.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("NewClient() = %T, want *redis.ClusterClient", c)
		}
		o := cc.Options()
		if diff := cmp.Diff([]string{"10.0.0.1:6379", "10.0.0.2:6379"}, o.Addrs); diff != "" {
			t.Errorf("Addrs (-want +got):\n%s", diff)
		}
		if o.Username != "worker" || o.Password != "s3cret" || o.DialTimeout != 3*time.Second || o.PoolSize != 50 {
			t.Errorf("user %q, dial timeout %s, pool %d", o.Username, o.DialTimeout, o.PoolSize)
		}
		// No resend of a write: node clients never retry (-1), and the
		// cluster client tries once (MaxRedirects -1, stored as 0).
		if o.MaxRetries != -1 || o.MaxRedirects != 0 {
			t.Errorf("MaxRetries = %d, MaxRedirects = %d; want -1, 0", o.MaxRetries, o.MaxRedirects)
		}
		tc := o.TLSConfig
		if tc == nil || tc.RootCAs == nil || tc.InsecureSkipVerify || tc.ServerName != "" {
			t.Errorf("TLS config %+v: want the CA, verification on, and the server name of each node's own address", tc)
		}
		if _, err := r.Options(); err == nil || !strings.Contains(err.Error(), "NewClient") {
			t.Errorf("Options() in cluster mode = %v, want an error pointing at NewClient", err)
		}

		plain, err := config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisClusterAddrs: []string{"a:1"}}.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if o := plain.(*redis.ClusterClient).Options(); o.MaxRedirects != 3 || o.TLSConfig != nil {
			t.Errorf("without NoRetries: MaxRedirects = %d (want go-redis's 3), TLS %v", o.MaxRedirects, o.TLSConfig)
		}
	})
	t.Run("Sentinel", func(t *testing.T) {
		r := config.Redis{
			RedisURL:              "rediss://worker:s3cret@/4?read_timeout=2s",
			RedisTLSCA:            certs.CA,
			RedisSentinelAddrs:    []string{"10.0.0.9:26379", " 10.0.0.10:26379"},
			RedisSentinelMaster:   " mymaster ",
			RedisSentinelPassword: "sentinel-s3cret",
		}
		fo, err := r.FailoverOptions(config.NoRetries(), config.MinPoolSize(40))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"10.0.0.9:26379", "10.0.0.10:26379"}, fo.SentinelAddrs); diff != "" {
			t.Errorf("SentinelAddrs (-want +got):\n%s", diff)
		}
		if fo.MasterName != "mymaster" || fo.SentinelPassword != "sentinel-s3cret" || fo.Username != "worker" || fo.Password != "s3cret" ||
			fo.DB != 4 || fo.ReadTimeout != 2*time.Second || fo.PoolSize != 40 || fo.MaxRetries != -1 {
			t.Errorf("failover options: master %q, user %q, db %d, read timeout %s, pool %d, retries %d",
				fo.MasterName, fo.Username, fo.DB, fo.ReadTimeout, fo.PoolSize, fo.MaxRetries)
		}
		if tc := fo.TLSConfig; tc == nil || tc.RootCAs == nil || tc.ServerName != "" {
			t.Errorf("TLS config %+v", tc)
		}
		c, err := r.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fc, ok := c.(*redis.Client)
		if !ok {
			t.Fatalf("NewClient() = %T, want the failover *redis.Client", c)
		}
		// go-redis stores the -1 we set ("no retries") as 0; its default is 3.
		if got := fc.Options().MaxRetries; got != 0 {
			t.Errorf("MaxRetries = %d, want no retries", got)
		}
	})
}

// LoadRedis (envconfig) and RedisEnv (any getenv, as the commands use) read
// the same settings the same way.
func TestLoadRedisModes(t *testing.T) {
	for _, k := range redisVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	env := map[string]string{
		"REDIS_URL":               "redis://:s3cret@/1",
		"REDIS_SENTINEL_ADDRS":    "127.0.0.1:26379, 127.0.0.1:26380",
		"REDIS_SENTINEL_MASTER":   "mymaster",
		"REDIS_SENTINEL_PASSWORD": "p",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	r, err := config.LoadRedis()
	if err != nil {
		t.Fatal(err)
	}
	if r.RedisMode() != config.ModeSentinel || r.RedisTarget() != "mymaster via 127.0.0.1:26379,127.0.0.1:26380" {
		t.Errorf("LoadRedis(): mode %s, target %s", r.RedisMode(), r.RedisTarget())
	}
	if diff := cmp.Diff(r, config.RedisEnv(os.Getenv)); diff != "" {
		t.Errorf("RedisEnv differs from LoadRedis (-LoadRedis +RedisEnv):\n%s", diff)
	}
	t.Setenv("REDIS_CLUSTER_ADDRS", "127.0.0.1:7000")
	if _, err := config.LoadRedis(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("LoadRedis() with cluster and sentinel = %v", err)
	}
	if got := config.RedisEnv(func(string) string { return "" }); got.RedisURL != "redis://127.0.0.1:6379/0" || got.RedisMode() != config.ModeSingle {
		t.Errorf("RedisEnv of an empty environment = %+v", got)
	}
}

// Each mode connects to a real server, with REDIS_URL's password.
func TestRedisModesConnect(t *testing.T) {
	ctx := context.Background()
	roundTrip := func(t *testing.T, c redis.UniversalClient) {
		t.Helper()
		for i := range 20 { // keys over many slots
			k := fmt.Sprintf("%sk%d", testredis.Prefix(t), i)
			if err := c.Set(ctx, k, i, time.Minute).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
			if got, err := c.Get(ctx, k).Int(); err != nil || got != i {
				t.Fatalf("GET %s = %d, %v", k, got, err)
			}
		}
	}
	t.Run("Single", func(t *testing.T) {
		t.Parallel()
		srv := testredis.Start(t)
		if err := srv.Client(t).ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
			t.Fatal(err)
		}
		c, err := config.Redis{RedisURL: "redis://:s3cret@" + srv.Addr + "/2"}.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c)
	})
	t.Run("Cluster", func(t *testing.T) {
		t.Parallel()
		srv, _ := testredis.OneNodeCluster(t)
		if err := srv.Client(t).ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
			t.Fatal(err)
		}
		r := config.Redis{RedisURL: "redis://default:s3cret@/0", RedisClusterAddrs: []string{srv.Addr}}
		c, err := r.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(*redis.ClusterClient); !ok {
			t.Fatalf("client is %T", c)
		}
		roundTrip(t, c)
		// Without the password the cluster refuses: the credentials came
		// from REDIS_URL.
		r.RedisURL = "redis:///0"
		nc, err := r.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := nc.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("PING without the password = %v, want NOAUTH", err)
		}
	})
	t.Run("Sentinel", func(t *testing.T) {
		t.Parallel()
		st := testredis.StartSentinel(t)
		// Password the data nodes; the Sentinels learn it first so they
		// keep seeing a healthy primary.
		for _, s := range st.Sentinels {
			if err := s.Client(t).Do(ctx, "SENTINEL", "SET", st.Master, "auth-pass", "s3cret").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Replica.Client(t).ConfigSet(ctx, "masterauth", "s3cret").Err(); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*testredis.Server{st.Primary, st.Replica} {
			if err := n.Client(t).ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
				t.Fatal(err)
			}
		}
		r := config.Redis{RedisURL: "redis://:s3cret@/3", RedisSentinelAddrs: st.SentinelAddrs(), RedisSentinelMaster: st.Master}
		c, err := r.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c)
		// The writes went to the primary, database 3.
		pc := redis.NewClient(&redis.Options{Addr: st.Primary.Addr, Password: "s3cret", DB: 3})
		defer pc.Close()
		if n, err := pc.DBSize(ctx).Result(); err != nil || n != 20 {
			t.Errorf("primary db 3 holds %d keys (%v), want the 20 written", n, err)
		}
	})
}
