package deploy

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/streamworker/streamworker/config"
)

// checkKEDA: the ScaledObject scales the worker Deployment on the lag and
// the pending entries of every configured stream of the configured group,
// never to zero, with credentials that exist.
func checkKEDA(t *testing.T, m *manifests, external map[string][]string, cfg config.Config) {
	so, ok := m.ScaledObjects["streamworker"]
	if !ok {
		t.Fatal("no ScaledObject streamworker")
	}
	if so.Spec.ScaleTargetRef.Name != "streamworker" || (so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment") {
		t.Errorf("ScaledObject scales %+v, not the Deployment streamworker", so.Spec.ScaleTargetRef)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		t.Error("minReplicaCount must be at least 1: only workers move due retries and delayed events into the stream")
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
		t.Error("maxReplicaCount is unset or below minReplicaCount")
	}
	lag, pending := map[string]bool{}, map[string]bool{}
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "redis-streams" {
			t.Errorf("trigger %s: type %s, want redis-streams", tr.Name, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !redisStreamsMetadata[k] {
				t.Errorf("trigger %s: metadata %q is not a redis-streams parameter", tr.Name, k)
			}
		}
		md := tr.Metadata
		if !slices.Contains(cfg.Streams, md["stream"]) {
			t.Errorf("trigger %s watches stream %q; WORKER_STREAMS is %v", tr.Name, md["stream"], cfg.Streams)
		}
		if md["consumerGroup"] != cfg.Group {
			t.Errorf("trigger %s watches group %q; WORKER_GROUP is %q", tr.Name, md["consumerGroup"], cfg.Group)
		}
		for _, k := range []string{"address", "host", "username", "password", "passwordFromEnv", "unsafeSsl"} {
			if _, ok := md[k]; ok {
				t.Errorf("trigger %s: %s belongs in the TriggerAuthentication's Secret", tr.Name, k)
			}
		}
		switch {
		case md["lagCount"] != "":
			lag[md["stream"]] = true
		case md["pendingEntriesCount"] != "":
			pending[md["stream"]] = true
			if n, err := strconv.Atoi(md["pendingEntriesCount"]); err != nil || n < 1 || n > cfg.Concurrency {
				t.Errorf("trigger %s: pendingEntriesCount %q; a replica holds at most WORKER_CONCURRENCY=%d pending", tr.Name, md["pendingEntriesCount"], cfg.Concurrency)
			}
		default:
			t.Errorf("trigger %s scales on neither lag nor pending entries", tr.Name)
		}
		if tr.AuthenticationRef == nil {
			t.Errorf("trigger %s has no authenticationRef", tr.Name)
			continue
		}
		ta, ok := m.TriggerAuths[tr.AuthenticationRef.Name]
		if !ok {
			t.Errorf("trigger %s: TriggerAuthentication %s is not in the output", tr.Name, tr.AuthenticationRef.Name)
			continue
		}
		checkTriggerAuth(t, m, external, cfg, ta)
	}
	for _, s := range cfg.Streams {
		if !lag[s] || !pending[s] {
			t.Errorf("stream %s: lag trigger %v, pending trigger %v; want both", s, lag[s], pending[s])
		}
	}
}

func checkTriggerAuth(t *testing.T, m *manifests, external map[string][]string, cfg config.Config, ta *triggerAuthentication) {
	params := map[string]string{}
	for _, ref := range ta.Spec.SecretTargetRef {
		if !redisAuthParams[ref.Parameter] {
			t.Errorf("TriggerAuthentication %s: %q is not a Redis parameter", ta.Name, ref.Parameter)
		}
		if s, ok := m.Secrets[ref.Name]; ok {
			v, ok := secretValue(s, ref.Key)
			if !ok {
				t.Errorf("TriggerAuthentication %s: Secret %s has no key %s", ta.Name, ref.Name, ref.Key)
			}
			params[ref.Parameter] = v
		} else if !slices.Contains(external[ref.Name], ref.Key) {
			t.Errorf("TriggerAuthentication %s: Secret %s key %s is neither rendered nor created by the operator", ta.Name, ref.Name, ref.Key)
		}
	}
	for _, p := range []string{"address", "username", "password"} {
		if !slices.ContainsFunc(ta.Spec.SecretTargetRef, func(r secretTargetRef) bool { return r.Parameter == p }) {
			t.Errorf("TriggerAuthentication %s lacks %s", ta.Name, p)
		}
	}
	// KEDA talks TLS when the worker does, verified with the same CA.
	u, _ := url.Parse(cfg.RedisURL)
	var hasTLS, hasCA bool
	for _, r := range ta.Spec.SecretTargetRef {
		hasTLS = hasTLS || r.Parameter == "tls"
		hasCA = hasCA || r.Parameter == "ca"
	}
	if u.Scheme == "rediss" && !hasTLS || cfg.RedisTLSCA != "" && !hasCA {
		t.Errorf("the worker uses %s (CA %q) but KEDA's TriggerAuthentication has tls %v, ca %v", u.Scheme, cfg.RedisTLSCA, hasTLS, hasCA)
	}
	if user, ok := params["username"]; ok && user != "keda" {
		t.Errorf("KEDA logs in as %q, not the keda ACL user", user)
	}
}
