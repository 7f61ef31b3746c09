package test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testcerts"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
)

// TestTLS runs the custom worker against a redis-server that listens on TLS
// only and asks for client certificates, all made by the test: the worker
// connects with REDIS_TLS_CA, REDIS_TLS_CERT and REDIS_TLS_KEY, and refuses
// every server it cannot verify and every plaintext connection.
func TestTLS(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/customworker", "customworker", raceEnabled)
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	stranger := testcerts.Write(t, t.TempDir(), "127.0.0.1") // a CA that signed nothing of the server's
	tlsAddr := freeAddr(t)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	srv := testredis.Start(t,
		"--tls-port", tlsPort,
		"--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "yes")
	// testredis checked readiness on the plaintext port; close it, leaving
	// TLS only.
	if err := srv.Client(t).ConfigSet(context.Background(), "port", "0").Err(); err != nil {
		t.Fatalf("closing the plaintext port: %v", err)
	}
	if c, err := net.DialTimeout("tcp", srv.Addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("the plaintext port %s still accepts connections", srv.Addr)
	}
	good := config.Redis{
		RedisURL:   "rediss://" + tlsAddr + "/0",
		RedisTLSCA: certs.CA, RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey,
	}
	opt, err := good.Options()
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opt)
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("connecting over TLS with the test CA and client certificate: %v", err)
	}

	tlsEnv := func(r config.Redis) map[string]string {
		return map[string]string{"REDIS_TLS_CA": r.RedisTLSCA, "REDIS_TLS_CERT": r.RedisTLSCert, "REDIS_TLS_KEY": r.RedisTLSKey}
	}

	t.Run("VerifiedMutualTLS", func(t *testing.T) {
		stream := "tls:" + testredis.RandomID()
		w := startWorker(t, bin, "worker", workerEnv(good.RedisURL, stream, "w1", tlsEnv(good)))
		pc, err := good.NewClient(config.NoRetries())
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		const n = 20
		events := make([]producer.Event, n)
		for i := range events {
			events[i] = producer.Event{Type: "ok", Data: payload(i+1, 0)}
		}
		if _, err := producer.New(pc, producer.Options{}).PublishBatch(context.Background(), stream, events); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, w, "every message processed over TLS", func() (bool, string) {
			got := counts(t, admin, stream+":processed")
			return len(got) == n, readGroup(t, admin, stream).String()
		})
		w.stop(30 * time.Second)
		w.requireCleanLog()
	})

	// Each of these must fail the TLS handshake (or refuse to start) and
	// never reach Redis: no group is created on its stream.
	for _, tc := range []struct {
		name string
		url  string
		tls  config.Redis
		want string // in the worker's log
	}{
		{
			name: "UnknownCA", url: good.RedisURL,
			tls:  config.Redis{RedisTLSCA: stranger.CA, RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey},
			want: "certificate signed by unknown authority",
		},
		{
			name: "SystemRootsOnly", url: good.RedisURL,
			tls:  config.Redis{RedisTLSCert: certs.ClientCert, RedisTLSKey: certs.ClientKey},
			want: "certificate signed by unknown authority",
		},
		{
			name: "WrongHostname", url: strings.Replace(good.RedisURL, "127.0.0.1", "localhost", 1), tls: good,
			want: "x509: certificate is", // valid for 127.0.0.1 only
		},
		{
			name: "NoClientCertificate", url: good.RedisURL, tls: config.Redis{RedisTLSCA: certs.CA},
			want: "certificate required",
		},
		{
			name: "PlaintextToTLSPort", url: "redis://" + tlsAddr + "/0",
			want: `"level":"ERROR"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := "tls:" + testredis.RandomID()
			w := startWorker(t, bin, "worker", workerEnv(tc.url, stream, "w1", tlsEnv(tc.tls)))
			waitFor(t, 30*time.Second, w, "the worker to report "+tc.want, func() (bool, string) {
				out := w.output.String()
				return strings.Contains(out, tc.want), tail(out, 600)
			})
			for line := range strings.SplitSeq(w.output.String(), "\n") {
				if strings.Contains(line, tc.want) {
					t.Logf("refused: %s", line)
					break
				}
			}
			w.stop(30 * time.Second)
			if g := readGroup(t, admin, stream); g.lag != -2 {
				t.Errorf("the worker reached Redis: %s", g)
			}
		})
	}

	// TLS files with a plaintext URL are a configuration error: the worker
	// does not quietly connect without TLS.
	t.Run("TLSFilesWithPlaintextURLRefused", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t, bin, "worker", workerEnv("redis://"+tlsAddr+"/0", "tls:x", "w1", tlsEnv(good)))
		if code := w.wait(20 * time.Second); code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
		if out := w.output.String(); !strings.Contains(out, "REDIS_URL") || !strings.Contains(out, "rediss://") {
			t.Errorf("output %q does not ask for a rediss:// REDIS_URL", out)
		}
	})
}
