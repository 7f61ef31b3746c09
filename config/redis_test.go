package config_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testcerts"
)

func TestRedisValidate(t *testing.T) {
	dir := t.TempDir()
	certs := testcerts.Write(t, dir, "127.0.0.1")
	other := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const tlsURL = "rediss://worker:s3cret@redis.example:6380/0"
	for _, tc := range []struct {
		name string
		r    config.Redis
		// wantVar is the variable the error names ("" for no error); the
		// error must also contain each of want.
		wantVar string
		want    []string
	}{
		{name: "Plaintext", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0"}},
		{name: "TLSSystemRoots", r: config.Redis{RedisURL: tlsURL}},
		{name: "TLSWithCA", r: config.Redis{RedisURL: tlsURL, RedisTLSCA: certs.CA}},
		{name: "MutualTLS", r: config.Redis{RedisURL: tlsURL, RedisTLSCA: certs.CA, RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey}},
		{
			name: "CAWithPlaintextURL", r: config.Redis{RedisURL: "redis://:s3cret@127.0.0.1:6379/0", RedisTLSCA: certs.CA},
			wantVar: "REDIS_URL", want: []string{"rediss://", "REDIS_TLS_CA", "redis://:xxxxx@127.0.0.1:6379/0"},
		},
		{
			name: "CertWithPlaintextURL", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0", RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey},
			wantVar: "REDIS_URL", want: []string{"REDIS_TLS_CERT, REDIS_TLS_KEY"},
		},
		{
			name: "SkipVerifyRefused", r: config.Redis{RedisURL: tlsURL + "?skip_verify=true"},
			wantVar: "REDIS_URL", want: []string{"skip_verify", "cannot be turned off"},
		},
		{
			name: "UnreadableCA", r: config.Redis{RedisURL: tlsURL, RedisTLSCA: missing},
			wantVar: "REDIS_TLS_CA", want: []string{missing, "no such file or directory"},
		},
		{
			name: "CAIsNotPEM", r: config.Redis{RedisURL: tlsURL, RedisTLSCA: notPEM},
			wantVar: "REDIS_TLS_CA", want: []string{notPEM, "at least one CA certificate"},
		},
		{
			name: "CertWithoutKey", r: config.Redis{RedisURL: tlsURL, RedisTLSCert: certs.ClientCert},
			wantVar: "REDIS_TLS_KEY", want: []string{"set both or neither"},
		},
		{
			name: "KeyWithoutCert", r: config.Redis{RedisURL: tlsURL, RedisTLSKey: certs.ClientKey},
			wantVar: "REDIS_TLS_CERT", want: []string{"set both or neither"},
		},
		{
			name: "UnreadableCert", r: config.Redis{RedisURL: tlsURL, RedisTLSCert: missing, RedisTLSKey: certs.ClientKey},
			wantVar: "REDIS_TLS_CERT", want: []string{missing},
		},
		{
			name: "UnreadableKey", r: config.Redis{RedisURL: tlsURL, RedisTLSCert: certs.ClientCert, RedisTLSKey: missing},
			wantVar: "REDIS_TLS_KEY", want: []string{missing},
		},
		{
			name: "KeyOfAnotherCert", r: config.Redis{RedisURL: tlsURL, RedisTLSCert: certs.ClientCert, RedisTLSKey: other.ClientKey},
			wantVar: "REDIS_TLS_CERT", want: []string{certs.ClientCert, other.ClientKey},
		},
		{
			name: "BadURLRedacted", r: config.Redis{RedisURL: "http://app:s3cret@x"},
			wantVar: "REDIS_URL", want: []string{"http://app:xxxxx@x"},
		},
		{
			name: "BadOptionValue", r: config.Redis{RedisURL: "redis://app:s3cret@127.0.0.1:6379/0?dial_timeout=banana"},
			wantVar: "REDIS_URL", want: []string{"redis://app:xxxxx@127.0.0.1:6379/0?dial_timeout=banana", "dial_timeout", `"banana"`},
		},
		{
			name: "OptionValueIsThePassword", r: config.Redis{RedisURL: "redis://app:s3cret@127.0.0.1:6379/0?read_timeout=s3cret"},
			wantVar: "REDIS_URL", want: []string{"read_timeout"},
		},
		{
			name: "UnknownOption", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0?dial_timout=1s"},
			wantVar: "REDIS_URL", want: []string{"dial_timout", "unexpected option"},
		},
		{
			name: "UnknownOptionInClusterMode", r: config.Redis{RedisURL: "redis://app:s3cret@/0?bogus=1", RedisClusterAddrs: []string{"127.0.0.1:7000"}},
			wantVar: "REDIS_URL", want: []string{"bogus"},
		},
		{name: "KnownOptions", r: config.Redis{RedisURL: "redis://127.0.0.1:6379/0?dial_timeout=3s&pool_size=20&client_name=w"}},
		{
			name: "PortOutOfRange", r: config.Redis{RedisURL: "redis://app:s3cret@127.0.0.1:99999/0"},
			wantVar: "REDIS_URL", want: []string{"redis://app:xxxxx@127.0.0.1:99999/0", "port from 1 to 65535"},
		},
		{
			name: "PortZero", r: config.Redis{RedisURL: "redis://127.0.0.1:0/0"},
			wantVar: "REDIS_URL", want: []string{"port from 1 to 65535"},
		},
		{name: "NoPortIs6379", r: config.Redis{RedisURL: "redis://redis.example/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			checkRefused(t, tc.r, err, tc.wantVar, tc.want)
		})
	}
}

// checkRefused checks a refusal of r by Validate: err names wantVar and
// contains every want, never the password, and Config.Validate and
// NewClient refuse r the same way.
func checkRefused(t *testing.T, r config.Redis, err error, wantVar string, want []string) {
	t.Helper()
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Validate() = %v, want a *config.Error", err)
	}
	if cerr.Var != wantVar {
		t.Errorf("error names %s, want %s: %v", cerr.Var, wantVar, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %q", err)
	}
	cfg := config.Default()
	cfg.Redis = r
	if got := cfg.Validate(); got == nil || got.Error() != err.Error() {
		t.Errorf("Config.Validate() = %v, want %v", got, err)
	}
	if c, nerr := r.NewClient(); nerr == nil {
		_ = c.Close()
		t.Errorf("NewClient() accepted what Validate refused")
	}
}

func TestRedisOptions(t *testing.T) {
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	r := config.Redis{
		RedisURL:   "rediss://worker:s3cret@redis.example:6380/3",
		RedisTLSCA: certs.CA, RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey,
	}
	o, err := r.Options(config.NoRetries(), config.MinPoolSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if o.Username != "worker" || o.Password != "s3cret" || o.DB != 3 || o.Addr != "redis.example:6380" {
		t.Errorf("options: user %q db %d addr %q", o.Username, o.DB, o.Addr)
	}
	if o.MaxRetries != -1 || o.PoolSize != 100 {
		t.Errorf("MaxRetries = %d, PoolSize = %d; want -1, 100", o.MaxRetries, o.PoolSize)
	}
	tc := o.TLSConfig
	switch {
	case tc == nil:
		t.Fatal("no TLS config for rediss://")
	case tc.InsecureSkipVerify:
		t.Error("InsecureSkipVerify is set")
	case tc.ServerName != "redis.example":
		t.Errorf("ServerName = %q, want redis.example", tc.ServerName)
	case tc.RootCAs == nil:
		t.Error("RootCAs not set from REDIS_TLS_CA")
	case tc.MinVersion < tls.VersionTLS12:
		t.Errorf("MinVersion = %x, want TLS 1.2 or later", tc.MinVersion)
	}
	cert, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		t.Fatalf("GetClientCertificate() = %v, %v", cert, err)
	}
	// A rotated certificate is read at the next handshake; a broken one
	// fails that handshake with the variable named.
	if err := os.WriteFile(certs.ClientCert, []byte("rotated badly"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{}); err == nil || !strings.Contains(err.Error(), "REDIS_TLS_CERT") {
		t.Errorf("GetClientCertificate() after a bad rotation = %v, want an error naming REDIS_TLS_CERT", err)
	}

	plain, err := config.Redis{RedisURL: "redis://127.0.0.1:6379/0"}.Options(config.MinPoolSize(4))
	if err != nil {
		t.Fatal(err)
	}
	if plain.TLSConfig != nil || plain.MaxRetries == -1 {
		t.Errorf("plaintext options: TLS %v, MaxRetries %d", plain.TLSConfig, plain.MaxRetries)
	}
	// A pool_size in the URL wins when larger.
	big, err := config.Redis{RedisURL: "redis://127.0.0.1:6379/0?pool_size=500"}.Options(config.MinPoolSize(4))
	if err != nil || big.PoolSize != 500 {
		t.Errorf("pool_size=500 with MinPoolSize(4): %v, %v", big.PoolSize, err)
	}
}

func TestLoadRedis(t *testing.T) {
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	for _, k := range redisVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	r, err := config.LoadRedis()
	if diff := cmp.Diff(config.Redis{RedisURL: "redis://127.0.0.1:6379/0"}, r); err != nil || diff != "" {
		t.Fatalf("LoadRedis() with an empty environment: %v (-want +got):\n%s", err, diff)
	}
	t.Setenv("REDIS_URL", "rediss://redis.example:6380/0")
	t.Setenv("REDIS_TLS_CA", certs.CA)
	r, err = config.LoadRedis()
	if err != nil || r.RedisTLSCA != certs.CA {
		t.Fatalf("LoadRedis() = %+v, %v", r, err)
	}
	// The worker's configuration reads the same variables.
	t.Setenv("WORKER_CONSUMER", "pod-0")
	cfg, err := config.Load()
	if diff := cmp.Diff(r, cfg.Redis); err != nil || diff != "" {
		t.Fatalf("Load().Redis: %v (-want +got):\n%s", err, diff)
	}
	t.Setenv("REDIS_TLS_CERT", certs.ClientCert)
	if _, err := config.LoadRedis(); err == nil || !strings.Contains(err.Error(), "REDIS_TLS_KEY") {
		t.Errorf("LoadRedis() with a certificate and no key = %v, want an error naming REDIS_TLS_KEY", err)
	}
}
