package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/kelseyhightower/envconfig"
	"github.com/redis/go-redis/v9"
)

// Redis is how to reach a Redis: its URL and, for rediss://, the TLS files.
// Config embeds it (so cfg.RedisURL is the worker's REDIS_URL); LoadRedis
// reads it alone, for commands that need a connection and nothing else.
// NewClient is the one place a client is built from these settings.
//
// The fields carry the Redis prefix because they are promoted into Config.
type Redis struct {
	// RedisURL is redis:// or rediss:// (TLS), with the ACL user and password
	// (rediss://worker:password@host:6380/0). The password is never logged.
	// Certificate verification cannot be turned off: a skip_verify query
	// parameter is refused. Default: redis://127.0.0.1:6379/0
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
}

// LoadRedis reads only the connection settings (REDIS_URL, REDIS_TLS_CA,
// REDIS_TLS_CERT, REDIS_TLS_KEY) from the environment and validates them.
func LoadRedis() (Redis, error) {
	var r Redis
	if err := envconfig.Process("", &r); err != nil {
		return Redis{}, err
	}
	return r, r.Validate()
}

// Validate checks the URL and that the TLS files are usable: each set file
// is readable and holds what it should, a certificate comes with its key, and
// TLS files come with a rediss:// URL (a plaintext URL would silently ignore
// them).
func (r Redis) Validate() error {
	if err := validateRedisURL(r.RedisURL); err != nil {
		return err
	}
	u, _ := url.Parse(r.RedisURL) // validateRedisURL parsed it
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

// ClientOption adjusts the go-redis options NewClient builds.
type ClientOption func(*redis.Options)

// NoRetries turns off go-redis's resending of a command whose connection
// broke. A producer needs it: a resent XADD whose first reply was lost
// appends the event twice.
func NoRetries() ClientOption { return func(o *redis.Options) { o.MaxRetries = -1 } }

// MinPoolSize makes the connection pool at least n connections (a pool_size
// in the URL wins when larger).
func MinPoolSize(n int) ClientOption {
	return func(o *redis.Options) { o.PoolSize = max(o.PoolSize, n) }
}

// NewClient validates the settings and returns a client for them. It does
// not connect: the first command does.
func (r Redis) NewClient(opts ...ClientOption) (redis.UniversalClient, error) {
	o, err := r.Options(opts...)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// Options validates the settings and returns the go-redis options NewClient
// uses, for a caller that needs a *redis.Client of its own.
func (r Redis) Options(opts ...ClientOption) (*redis.Options, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(r.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL=%q: %s", Redact(r.RedisURL), redactPassword(err.Error(), r.RedisURL))
	}
	if o.TLSConfig != nil { // rediss://
		o.TLSConfig.InsecureSkipVerify = false
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
	for _, f := range opts {
		f(o)
	}
	return o, nil
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
