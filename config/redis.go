package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/kelseyhightower/envconfig"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
)

// Redis is how to reach the stream Redis: a single server, a Redis Cluster
// or a primary managed by Sentinel, with the ACL user, password and TLS files.
// Config embeds it (so cfg.RedisURL is the worker's REDIS_URL); LoadRedis and
// RedisEnv read it alone, for commands that need a connection and nothing
// else. NewClient is the one place a client is built from these settings.
//
// The mode follows from what is set: REDIS_CLUSTER_ADDRS is a Redis Cluster,
// REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER is Sentinel, neither is the
// single server of REDIS_URL. REDIS_URL always carries how to log in and
// whether to use TLS (its scheme, user, password and query options), in every
// mode, so switching modes changes where the worker connects and nothing else;
// in Cluster and Sentinel mode its host is not used and may be left out
// (rediss://worker:password@/0).
//
// The fields carry the Redis prefix because they are promoted into Config.
type Redis struct {
	// RedisURL is redis:// or rediss:// (TLS), with the ACL user and password
	// (rediss://worker:password@host:6380/0). The password is never logged.
	// Certificate verification cannot be turned off: a skip_verify query
	// parameter is refused. In Cluster and Sentinel mode the host is not
	// used. Default: redis://127.0.0.1:6379/0
	RedisURL string `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0"`
	// RedisTLSCA is a PEM file of the CA certificates that verify the
	// server's certificate, instead of the system's roots. Only with
	// rediss://. Default: none (the system's roots)
	RedisTLSCA string `envconfig:"REDIS_TLS_CA"`
	// RedisTLSCert is a PEM client certificate, for a server that asks for
	// one (tls-auth-clients). Needs RedisTLSKey. It is read again for every
	// new connection, so a rotated certificate is used without a restart.
	// Default: none
	RedisTLSCert string `envconfig:"REDIS_TLS_CERT"`
	// RedisTLSKey is the PEM private key of RedisTLSCert. Default: none
	RedisTLSKey string `envconfig:"REDIS_TLS_KEY"`

	// RedisClusterAddrs, when set, are seed nodes of a Redis Cluster
	// (host:port, comma separated; a few are enough, the client learns the
	// rest). Every node is reached with REDIS_URL's user, password and TLS,
	// and in TLS each node's certificate is verified against the host it is
	// reached at. REDIS_URL's database must be 0, the only one a cluster has.
	// Default: none (not a cluster)
	RedisClusterAddrs []string `envconfig:"REDIS_CLUSTER_ADDRS"`
	// RedisSentinelAddrs, when set, are the Sentinels (host:port, comma
	// separated) to ask for the primary of RedisSentinelMaster; the client
	// follows a failover without a restart. The primary is reached with
	// REDIS_URL's user, password, database and TLS. Default: none
	RedisSentinelAddrs []string `envconfig:"REDIS_SENTINEL_ADDRS"`
	// RedisSentinelMaster is the name the Sentinels monitor the primary
	// under (sentinel monitor <name> ...). Required with RedisSentinelAddrs.
	// Default: none
	RedisSentinelMaster string `envconfig:"REDIS_SENTINEL_MASTER"`
	// RedisSentinelPassword is the Sentinels' own password (requirepass in
	// sentinel.conf), when they have one; it is never logged. Default: none
	RedisSentinelPassword string `envconfig:"REDIS_SENTINEL_PASSWORD"`

	// RedisScripts is how the Lua scripts run. eval: EVALSHA, and EVAL of
	// the source after a NOSCRIPT, so the ACL user needs +evalsha +eval,
	// which let it run any Lua. functions: FCALL of the functions that
	// `streamctl scripts load` put on the server beforehand (one per script,
	// named sw_<sha1>), never EVAL, so the user needs +fcall (and
	// +function|list for the worker's check at start) and runs nothing
	// else: what deploy/redis/users.acl grants; Redis 7.0 or later. Empty
	// is eval. Default: eval
	RedisScripts string `envconfig:"REDIS_SCRIPTS"`
}

// The ways scripts run, for REDIS_SCRIPTS (Redis.ScriptsMode).
const (
	ScriptsEval      = "eval"      // EVALSHA, EVAL after NOSCRIPT
	ScriptsFunctions = "functions" // FCALL of the loaded functions
)

// ScriptsMode is REDIS_SCRIPTS, lower-cased, with the default filled in:
// ScriptsEval or ScriptsFunctions (or what Validate refuses).
func (r Redis) ScriptsMode() string {
	m := strings.ToLower(strings.TrimSpace(r.RedisScripts))
	if m == "" {
		return ScriptsEval
	}
	return m
}

// The connection modes RedisMode reports.
const (
	ModeSingle   = "single"   // one server, REDIS_URL
	ModeCluster  = "cluster"  // Redis Cluster, REDIS_CLUSTER_ADDRS
	ModeSentinel = "sentinel" // Sentinel, REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER
)

// LoadRedis reads only the connection settings (REDIS_URL, REDIS_TLS_CA,
// REDIS_TLS_CERT, REDIS_TLS_KEY, REDIS_CLUSTER_ADDRS, REDIS_SENTINEL_ADDRS,
// REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD, REDIS_SCRIPTS) from the
// environment and validates them.
func LoadRedis() (Redis, error) {
	var r Redis
	if err := envconfig.Process("", &r); err != nil {
		return Redis{}, err
	}
	return r, r.Validate()
}

// RedisEnv reads the connection settings through getenv, as LoadRedis reads
// them from the process environment (an empty REDIS_URL is the default), and
// does not validate them: NewClient does.
func RedisEnv(getenv func(string) string) Redis {
	r := Redis{
		RedisURL:              getenv("REDIS_URL"),
		RedisTLSCA:            getenv("REDIS_TLS_CA"),
		RedisTLSCert:          getenv("REDIS_TLS_CERT"),
		RedisTLSKey:           getenv("REDIS_TLS_KEY"),
		RedisClusterAddrs:     splitList(getenv("REDIS_CLUSTER_ADDRS")),
		RedisSentinelAddrs:    splitList(getenv("REDIS_SENTINEL_ADDRS")),
		RedisSentinelMaster:   getenv("REDIS_SENTINEL_MASTER"),
		RedisSentinelPassword: getenv("REDIS_SENTINEL_PASSWORD"),
		RedisScripts:          getenv("REDIS_SCRIPTS"),
	}
	if r.RedisURL == "" {
		r.RedisURL = "redis://127.0.0.1:6379/0"
	}
	return r
}

// splitList splits a comma-separated value as envconfig does.
func splitList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// addrs returns the entries of a host:port list without surrounding spaces
// and without empty entries.
func addrs(list []string) []string {
	var out []string
	for _, a := range list {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// RedisMode is how the settings connect: ModeSingle, ModeCluster or
// ModeSentinel. For logs and for code that must know; clients are built by
// NewClient in every mode.
func (r Redis) RedisMode() string {
	switch {
	case len(addrs(r.RedisClusterAddrs)) > 0:
		return ModeCluster
	case len(addrs(r.RedisSentinelAddrs)) > 0:
		return ModeSentinel
	default:
		return ModeSingle
	}
}

// RedisTarget says where the settings connect, without the password, for
// logs: the redacted REDIS_URL, the cluster's seed nodes, or the Sentinel
// master name and the Sentinels.
func (r Redis) RedisTarget() string {
	switch r.RedisMode() {
	case ModeCluster:
		return strings.Join(addrs(r.RedisClusterAddrs), ",")
	case ModeSentinel:
		return strings.TrimSpace(r.RedisSentinelMaster) + " via " + strings.Join(addrs(r.RedisSentinelAddrs), ",")
	default:
		return Redact(r.RedisURL)
	}
}

// Validate checks the mode, the URL and that the TLS files are usable: one
// mode at a time, each address host:port, each set file readable and
// holding what it should, a certificate with its key, and TLS files with a
// rediss:// URL (a plaintext URL would silently ignore them).
func (r Redis) Validate() error {
	if err := r.validateMode(); err != nil {
		return err
	}
	if m := r.ScriptsMode(); m != ScriptsEval && m != ScriptsFunctions {
		return bad("REDIS_SCRIPTS", r.RedisScripts, "eval (EVALSHA and EVAL: the Redis user needs +evalsha +eval) or functions "+
			"(FCALL of the functions `streamctl scripts load` loaded: the user needs +fcall +function|list, as the worker user of deploy/redis/users.acl; Redis 7.0 or later)")
	}
	if err := r.validateURL(); err != nil {
		return err
	}
	if _, err := redis.ParseURL(r.RedisURL); err != nil {
		// An unknown query option or a bad option value: what go-redis
		// would refuse when the client is built, refused here as the
		// configuration error it is. The value may be the password.
		return bad("REDIS_URL", redactPassword(Redact(r.RedisURL), r.RedisURL),
			"query options go-redis knows, with valid values, such as ?dial_timeout=5s&pool_size=20 ("+
				redactPassword(strings.TrimPrefix(err.Error(), "redis: "), r.RedisURL)+")")
	}
	u, _ := url.Parse(r.RedisURL) // validateURL parsed it
	if u.Query().Has("skip_verify") {
		return bad("REDIS_URL", Redact(r.RedisURL), "a URL without skip_verify: certificate verification cannot be turned off; set REDIS_TLS_CA to the CA that signed the server's certificate")
	}
	if set := r.tlsVars(); len(set) > 0 && u.Scheme != "rediss" {
		return bad("REDIS_URL", Redact(r.RedisURL), "a rediss:// URL (TLS files are set in "+strings.Join(set, ", ")+", and a plaintext redis:// URL would ignore them)")
	}
	if r.RedisTLSCA != "" {
		if _, err := loadCA(r.RedisTLSCA); err != nil {
			return err
		}
	}
	switch {
	case r.RedisTLSCert != "" && r.RedisTLSKey == "":
		return bad("REDIS_TLS_KEY", "", "the private key file of the client certificate in REDIS_TLS_CERT (set both or neither)")
	case r.RedisTLSCert == "" && r.RedisTLSKey != "":
		return bad("REDIS_TLS_CERT", "", "the client certificate file for the key in REDIS_TLS_KEY (set both or neither)")
	case r.RedisTLSCert != "":
		if _, err := loadKeyPair(r.RedisTLSCert, r.RedisTLSKey); err != nil {
			return err
		}
	}
	return nil
}

// validateMode checks that at most one of Cluster and Sentinel is asked for,
// that Sentinel has both its settings, and the address lists.
func (r Redis) validateMode() error {
	cluster, sentinel := addrs(r.RedisClusterAddrs), addrs(r.RedisSentinelAddrs)
	master := strings.TrimSpace(r.RedisSentinelMaster)
	switch {
	case len(cluster) > 0 && (len(sentinel) > 0 || master != ""):
		return bad("REDIS_CLUSTER_ADDRS", strings.Join(r.RedisClusterAddrs, ","),
			"unset while REDIS_SENTINEL_ADDRS or REDIS_SENTINEL_MASTER is set: connect to a Redis Cluster (REDIS_CLUSTER_ADDRS) or to a Sentinel-managed primary (REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER), not both")
	case len(sentinel) > 0 && master == "":
		return bad("REDIS_SENTINEL_MASTER", r.RedisSentinelMaster,
			"the name the Sentinels monitor the primary under (sentinel monitor <name> …), required with REDIS_SENTINEL_ADDRS")
	case len(sentinel) == 0 && master != "":
		return bad("REDIS_SENTINEL_ADDRS", strings.Join(r.RedisSentinelAddrs, ","),
			"the Sentinels to ask for the primary of REDIS_SENTINEL_MASTER="+strconv.Quote(master)+", as comma-separated host:port (sentinel-0:26379,sentinel-1:26379)")
	case len(sentinel) == 0 && r.RedisSentinelPassword != "":
		return bad("REDIS_SENTINEL_PASSWORD", "xxxxx", "unset without REDIS_SENTINEL_ADDRS: it is the Sentinels' own password; the server's password goes in REDIS_URL")
	}
	if err := checkAddrs("REDIS_CLUSTER_ADDRS", r.RedisClusterAddrs, "redis-0:6379,redis-1:6379"); err != nil {
		return err
	}
	return checkAddrs("REDIS_SENTINEL_ADDRS", r.RedisSentinelAddrs, "sentinel-0:26379,sentinel-1:26379")
}

// checkAddrs checks that every entry of a comma-separated list is host:port.
func checkAddrs(name string, list []string, example string) error {
	for _, a := range addrs(list) {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return bad(name, strings.Join(list, ","), "comma-separated host:port addresses such as "+example+" ("+strconv.Quote(a)+" is not host:port)")
		}
	}
	return nil
}

// validateURL checks REDIS_URL for the mode: in single mode it names the
// server; in Cluster and Sentinel mode only its scheme, user, password,
// database and options are used, and the host may be left out.
func (r Redis) validateURL() error {
	mode := r.RedisMode()
	if mode == ModeSingle {
		return validateRedisURL(r.RedisURL)
	}
	u, err := url.Parse(r.RedisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return bad("REDIS_URL", Redact(r.RedisURL), "a URL with the user, password and TLS for the nodes (redis:// or rediss://), such as rediss://user:password@/0; in "+mode+" mode its host is not used")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return bad("REDIS_URL", Redact(r.RedisURL), "a database number after the host, such as /0")
		}
	}
	if mode == ModeCluster && ((db != "" && db != "0") || (u.Query().Has("db") && u.Query().Get("db") != "0")) {
		return bad("REDIS_URL", Redact(r.RedisURL), "database 0 (or none) with REDIS_CLUSTER_ADDRS: a Redis Cluster has only database 0")
	}
	return nil
}

// tlsVars names the TLS variables that are set.
func (r Redis) tlsVars() []string {
	var set []string
	for _, v := range []struct{ name, val string }{
		{"REDIS_TLS_CA", r.RedisTLSCA}, {"REDIS_TLS_CERT", r.RedisTLSCert}, {"REDIS_TLS_KEY", r.RedisTLSKey},
	} {
		if v.val != "" {
			set = append(set, v.name)
		}
	}
	return set
}

// ClientOption adjusts the client NewClient builds, in every mode.
type ClientOption func(*tuning)

// tuning is what the ClientOptions ask for.
type tuning struct {
	noRetries bool
	minPool   int
}

// NoRetries turns off go-redis's resending of a command whose connection
// broke. A producer needs it: a resent XADD whose first reply was lost
// appends the event twice. On a Redis Cluster it also turns off following a
// MOVED or ASK redirection (go-redis counts both as retries): after a
// failover or a resharding the first command to a moved slot fails, nothing
// was written, and the next one goes to the new owner.
func NoRetries() ClientOption { return func(t *tuning) { t.noRetries = true } }

// MinPoolSize makes the connection pool at least n connections (a pool_size
// in the URL wins when larger). On a Redis Cluster the pool is per node.
func MinPoolSize(n int) ClientOption {
	return func(t *tuning) { t.minPool = max(t.minPool, n) }
}

func tune(opts []ClientOption) tuning {
	var t tuning
	for _, f := range opts {
		f(&t)
	}
	return t
}

// NewClient validates the settings and returns a client for the mode: a
// *redis.Client for one server, a *redis.ClusterClient for a Redis Cluster,
// a failover *redis.Client (which asks the Sentinels for the primary) for
// Sentinel. With REDIS_SCRIPTS=functions its scripts run as FCALL of their
// functions (a hook of internal/scriptfn). It does not connect: the first
// command does.
func (r Redis) NewClient(opts ...ClientOption) (redis.UniversalClient, error) {
	o, err := r.urlOptions()
	if err != nil {
		return nil, err
	}
	t := tune(opts)
	var c redis.UniversalClient
	switch r.RedisMode() {
	case ModeCluster:
		c = redis.NewClusterClient(r.clusterOptions(o, t))
	case ModeSentinel:
		c = redis.NewFailoverClient(r.failoverOptions(o, t))
	default:
		t.apply(o)
		c = redis.NewClient(o)
	}
	if r.ScriptsMode() == ScriptsFunctions {
		c.AddHook(scriptfn.Hook())
	}
	return c, nil
}

// Options validates the settings and returns the go-redis options NewClient
// uses in single mode, for a caller that needs a *redis.Client of its own.
// In Cluster and Sentinel mode there is no one server to name, and with
// REDIS_SCRIPTS=functions a client needs more than options: it returns an
// error; use NewClient.
func (r Redis) Options(opts ...ClientOption) (*redis.Options, error) {
	o, err := r.urlOptions()
	if err != nil {
		return nil, err
	}
	if mode := r.RedisMode(); mode != ModeSingle {
		return nil, fmt.Errorf("config: the options of one server are not those of %s mode; build the client with Redis.NewClient", mode)
	}
	if r.ScriptsMode() == ScriptsFunctions {
		return nil, errors.New("config: REDIS_SCRIPTS=functions runs scripts through a client hook that options cannot carry; build the client with Redis.NewClient")
	}
	tune(opts).apply(o)
	return o, nil
}

func (t tuning) apply(o *redis.Options) {
	if t.noRetries {
		o.MaxRetries = -1 // go-redis stores it as 0: no retries
	}
	o.PoolSize = max(o.PoolSize, t.minPool)
}

// urlOptions validates the settings and returns the options REDIS_URL and
// the TLS files give: for the server in single mode, and the credentials,
// TLS and connection options of every node otherwise.
func (r Redis) urlOptions() (*redis.Options, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(r.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL=%q: %s", Redact(r.RedisURL), redactPassword(err.Error(), r.RedisURL))
	}
	if o.TLSConfig != nil { // rediss://
		o.TLSConfig.InsecureSkipVerify = false
		if r.RedisMode() != ModeSingle {
			// Each node is verified against the host it is reached at
			// (crypto/tls takes it from the address when ServerName is
			// empty), not against REDIS_URL's unused host.
			o.TLSConfig.ServerName = ""
		}
		if r.RedisTLSCA != "" {
			if o.TLSConfig.RootCAs, err = loadCA(r.RedisTLSCA); err != nil {
				return nil, err
			}
		}
		if r.RedisTLSCert != "" {
			certFile, keyFile := r.RedisTLSCert, r.RedisTLSKey
			// Read for every handshake: a certificate rotated on disk (a
			// Kubernetes Secret volume, cert-manager) is used from the next
			// new connection on.
			o.TLSConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return loadKeyPair(certFile, keyFile)
			}
		}
	}
	return o, nil
}

// universal carries what REDIS_URL set in o over to the options of the
// other modes.
func universal(o *redis.Options) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		ClientName: o.ClientName,
		DB:         o.DB,
		Protocol:   o.Protocol,
		Username:   o.Username,
		Password:   o.Password,

		MaxRetries:      o.MaxRetries,
		MinRetryBackoff: o.MinRetryBackoff,
		MaxRetryBackoff: o.MaxRetryBackoff,

		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,

		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PipelinePoolSize:        o.PipelinePoolSize,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,

		TLSConfig: o.TLSConfig,
	}
}

func (r Redis) clusterOptions(o *redis.Options, t tuning) *redis.ClusterOptions {
	u := universal(o)
	u.Addrs = addrs(r.RedisClusterAddrs)
	if t.noRetries {
		u.MaxRetries = -1
		u.MaxRedirects = -1 // go-redis stores it as 0: one try
	}
	u.PoolSize = max(u.PoolSize, t.minPool)
	return u.Cluster()
}

func (r Redis) failoverOptions(o *redis.Options, t tuning) *redis.FailoverOptions {
	u := universal(o)
	u.Addrs = addrs(r.RedisSentinelAddrs)
	u.MasterName = strings.TrimSpace(r.RedisSentinelMaster)
	u.SentinelPassword = r.RedisSentinelPassword
	if t.noRetries {
		u.MaxRetries = -1
	}
	u.PoolSize = max(u.PoolSize, t.minPool)
	return u.Failover()
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, bad("REDIS_TLS_CA", path, "a readable PEM file of CA certificates ("+pathErr(err)+")")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, bad("REDIS_TLS_CA", path, "a PEM file with at least one CA certificate")
	}
	return pool, nil
}

func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, bad("REDIS_TLS_CERT", certFile, "a readable PEM client certificate ("+pathErr(err)+")")
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, bad("REDIS_TLS_KEY", keyFile, "a readable PEM private key ("+pathErr(err)+")")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, bad("REDIS_TLS_CERT", certFile, "a PEM certificate whose private key is in REDIS_TLS_KEY="+strconv.Quote(keyFile)+" ("+err.Error()+")")
	}
	return &cert, nil
}

// pathErr is the reason of a file error without the path, which the message
// already shows.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// redactPassword removes the URL's password from a message that may quote
// the URL, in plain or escaped form.
func redactPassword(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return msg
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return msg
	}
	for _, s := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw)} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}
