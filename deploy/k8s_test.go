package deploy

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/builtin"
	"github.com/streamworker/streamworker/internal/testcerts"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/worker"
)

// shutdownMargin is what the pod needs after WORKER_SHUTDOWN_TIMEOUT before
// SIGKILL: handlers get 2s to return once cancelled at the deadline, the
// unfinished work is handed over and the last acknowledgements flushed (a
// round trip each, bounded by 5s), and the HTTP server closes (2s).
const shutdownMargin = 10 * time.Second

// overlay is one set of manifests a user applies — a kustomization, or the
// Helm chart with a values file — and what it expects to find in its
// namespace rather than in git.
type overlay struct {
	dir string
	// external are the Secrets (and their keys) the operator creates.
	external map[string][]string
	// redisURL stands in for the external REDIS_URL when the config is loaded.
	redisURL string
	keda     bool // has the KEDA component
	monitor  bool // has a ServiceMonitor
	// rules is the selector of the alert rules' metrics when there is a
	// PrometheusRule: the rules file's, or the chart's with its namespace.
	rules string
}

// overlays are the kustomizations a user applies.
var overlays = []overlay{
	{dir: "k8s/base", external: map[string][]string{"streamworker-redis": {"url"}}, redisURL: "redis://worker:x@redis:6379/0"},
	{dir: "k8s/overlays/dev", keda: true},
	{
		dir: "k8s/overlays/prod",
		external: map[string][]string{
			"streamworker-redis":      {"url"},
			"streamworker-redis-tls":  {"ca.crt"},
			"streamworker-keda-redis": {"address", "username", "password", "tls", "ca"},
		},
		redisURL: "rediss://worker:x@redis.example.com:6380/0",
		keda:     true, monitor: true, rules: rulesJob,
	},
}

func TestManifests(t *testing.T) {
	for _, ov := range overlays {
		t.Run(strings.ReplaceAll(ov.dir, "/", "_"), func(t *testing.T) { checkManifests(t, render(t, ov.dir), ov) })
	}
}

// checkManifests holds one rendering to what docs/deploy.md promises of the
// manifests.
func checkManifests(t *testing.T, m *manifests, ov overlay) {
	d, ok := m.Deployments["streamworker"]
	if !ok {
		t.Fatalf("%s renders no Deployment streamworker", ov.dir)
	}
	pod := &d.Spec.Template.Spec
	c := container(t, pod.Containers, "worker")
	env := resolveEnv(t, m, ov.external, c)

	t.Run("EnvVarsAreConfig", func(t *testing.T) {
		known := configVars(t)
		for name := range env {
			if !known[name] {
				t.Errorf("the worker container sets %s, which the config package does not read", name)
			}
		}
		if src := env["WORKER_CONSUMER"]; src.fieldPath != "metadata.name" {
			t.Errorf("WORKER_CONSUMER comes from %+v, want the pod name (fieldRef metadata.name)", src)
		}
		if src := env["REDIS_URL"]; src.secret == "" {
			t.Errorf("REDIS_URL is not read from a Secret: %+v", src)
		}
	})

	cfg := loadConfig(t, m, ov.redisURL, pod, c, env)
	t.Run("Plugins", func(t *testing.T) {
		// loadConfig has set the container's environment: the daemon's
		// plugins must start with what the manifests give them.
		if _, err := builtin.LoadConfig(); err != nil {
			t.Errorf("cmd/worker would not start: %v", err)
		}
	})

	t.Run("GracePeriodExceedsShutdownTimeout", func(t *testing.T) {
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds is not set (the default 30s is not derived from WORKER_SHUTDOWN_TIMEOUT)")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		if grace < cfg.ShutdownTimeout+shutdownMargin {
			t.Errorf("terminationGracePeriodSeconds is %s; WORKER_SHUTDOWN_TIMEOUT is %s, so it must be at least %s",
				grace, cfg.ShutdownTimeout, cfg.ShutdownTimeout+shutdownMargin)
		}
	})
	t.Run("ProbesHitRealPaths", func(t *testing.T) { checkProbes(t, cfg, c) })
	t.Run("SecurityContext", func(t *testing.T) { checkSecurity(t, m) })
	t.Run("Resources", func(t *testing.T) { checkResources(t, m) })
	t.Run("ServiceAndPDB", func(t *testing.T) {
		podLabels := d.Spec.Template.Labels
		svc, ok := m.Services["streamworker-metrics"]
		if !ok {
			t.Fatal("no Service streamworker-metrics")
		}
		if !subset(svc.Spec.Selector, podLabels) {
			t.Errorf("Service selector %v does not select the worker pods %v", svc.Spec.Selector, podLabels)
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.String() != "http" || !hasPort(c, "http") {
				t.Errorf("Service port %s targets %s, not the container's http port", p.Name, p.TargetPort.String())
			}
		}
		pdb, ok := m.PDBs["streamworker"]
		if !ok {
			t.Fatal("no PodDisruptionBudget streamworker")
		}
		if !subset(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PDB selector %v does not select the worker pods", pdb.Spec.Selector.MatchLabels)
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
			t.Errorf("PDB maxUnavailable = %v; at least 1, or a node drain blocks on a single replica", pdb.Spec.MaxUnavailable)
		}
		if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Error("a rollout should add the new pod before draining an old one (maxUnavailable 0)")
		}
	})
	t.Run("NetworkPolicy", func(t *testing.T) { checkNetworkPolicy(t, m, cfg, d.Spec.Template.Labels) })
	t.Run("ACLPrefix", func(t *testing.T) {
		prefix := aclKeyPattern(t, "worker")
		for _, s := range cfg.Streams {
			if ok, _ := path.Match(prefix, s); !ok {
				t.Errorf("stream %q is outside the worker ACL user's keys %q (deploy/redis/users.acl)", s, prefix)
			}
		}
		if u, err := url.Parse(cfg.RedisURL); err != nil || u.User.Username() != "worker" {
			t.Errorf("REDIS_URL does not log in as the worker ACL user: %s", config.Redact(cfg.RedisURL))
		}
		// The worker user may FCALL the loaded functions and not EVAL.
		if cfg.ScriptsMode() != config.ScriptsFunctions {
			t.Errorf("REDIS_SCRIPTS=%q with the worker ACL user, which may not EVAL: want functions", cfg.RedisScripts)
		}
	})
	t.Run("KEDA", func(t *testing.T) {
		if !ov.keda {
			if len(m.ScaledObjects) > 0 {
				t.Error("unexpected ScaledObject")
			}
			return
		}
		checkKEDA(t, m, ov.external, cfg)
	})
	t.Run("ServiceMonitor", func(t *testing.T) {
		if !ov.monitor {
			return
		}
		sm, ok := m.ServiceMonitors["streamworker"]
		if !ok {
			t.Fatal("no ServiceMonitor streamworker")
		}
		svc := m.Services["streamworker-metrics"]
		if !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
			t.Errorf("ServiceMonitor selects %v; the metrics Service has labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
		}
		for _, e := range sm.Spec.Endpoints {
			if e.Port != "http" || e.Path != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %s%s, want port http path /metrics", e.Port, e.Path)
			}
		}
	})
	t.Run("PrometheusRule", func(t *testing.T) {
		if ov.rules == "" {
			if len(m.PrometheusRules) > 0 {
				t.Error("unexpected PrometheusRule")
			}
			return
		}
		checkPrometheusRule(t, m, ov.rules)
	})
	t.Run("Image", func(t *testing.T) {
		if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") && !strings.Contains(c.Image, "@") {
			if ov.dir != "k8s/base" {
				t.Errorf("image %q is not pinned to a tag or digest", c.Image)
			}
		}
		if len(c.Command) > 0 {
			t.Errorf("command %v overrides the image's exec-form ENTRYPOINT", c.Command)
		}
	})
	if ov.dir == "k8s/overlays/dev" {
		t.Run("DevRedis", func(t *testing.T) { checkDevRedis(t, m, cfg) })
	}
}

// envSource is where one variable of the worker container comes from.
type envSource struct {
	value             string // literal or ConfigMap value, or a Secret's when rendered
	fieldPath         string
	secret, secretKey string
}

// resolveEnv returns the worker container's environment: env entries and
// every key of the ConfigMaps it imports, which must exist in the output.
func resolveEnv(t *testing.T, m *manifests, external map[string][]string, c *corev1.Container) map[string]envSource {
	t.Helper()
	env := map[string]envSource{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("envFrom %+v: only ConfigMaps are imported whole (Secrets key by key)", from)
			continue
		}
		cm, ok := m.ConfigMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("envFrom ConfigMap %s is not in the output", from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = envSource{value: v}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envSource{value: e.Value}
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = envSource{fieldPath: e.ValueFrom.FieldRef.FieldPath}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			src := envSource{secret: ref.Name, secretKey: ref.Key}
			if s, ok := m.Secrets[ref.Name]; ok {
				v, ok := secretValue(s, ref.Key)
				if !ok {
					t.Errorf("%s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
				}
				src.value = v
			} else if !slices.Contains(external[ref.Name], ref.Key) {
				t.Errorf("%s: Secret %s key %s is neither rendered nor documented as created by the operator", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = src
		default:
			t.Errorf("%s: unexpected source %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

func secretValue(s *corev1.Secret, key string) (string, bool) {
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

// configVars are the environment variables the config package reads (Config
// and Plugins), as envconfig itself names them.
func configVars(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if err := envconfig.Usagef("", &config.Config{}, &buf, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	// cmd/worker's plugin settings are read apart from Config.
	if err := envconfig.Usagef("", &builtin.Config{}, &buf, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, k := range strings.Fields(buf.String()) {
		vars[k] = true
	}
	if !vars["REDIS_URL"] || !vars["REDIS_TLS_CA"] || !vars["WORKER_STREAMS"] {
		t.Fatalf("config variables look wrong: %v", vars)
	}
	return vars
}

// loadConfig loads the worker's configuration from the manifests' values, as
// the pod would: an invalid value in a ConfigMap fails here, not at the
// first rollout. A TLS file must sit in a read-only Secret volume; the test
// substitutes generated files to load it.
func loadConfig(t *testing.T, m *manifests, externalURL string, pod *corev1.PodSpec, c *corev1.Container, env map[string]envSource) config.Config {
	t.Helper()
	certs := testcerts.Write(t, t.TempDir(), "127.0.0.1")
	stand := map[string]string{"REDIS_TLS_CA": certs.CA, "REDIS_TLS_CERT": certs.ClientCert, "REDIS_TLS_KEY": certs.ClientKey}
	for k := range configVars(t) {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, src := range env {
		v := src.value
		switch {
		case src.fieldPath == "metadata.name":
			v = "streamworker-7d9f8b6c5-x2x4z"
		case src.secret != "" && v == "":
			v = externalURL
		}
		if f, ok := stand[k]; ok && v != "" {
			checkSecretFile(t, m, pod, c, k, v)
			v = f
		}
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("the worker would not start with these manifests: %v", err)
	}
	return cfg
}

// checkSecretFile: the file at p (the value of variable) is a key of a
// Secret mounted read-only into c.
func checkSecretFile(t *testing.T, m *manifests, pod *corev1.PodSpec, c *corev1.Container, variable, p string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("%s=%s: the mount %s is not read-only", variable, p, vm.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				return
			}
		}
		t.Errorf("%s=%s: the volume %s is not a Secret", variable, p, vm.Name)
		return
	}
	t.Errorf("%s=%s is not in any volume mounted into the container", variable, p)
}

// checkProbes: readiness on /readyz and liveness on /healthz, on the port
// the worker serves (WORKER_HTTP_ADDR), and the worker's HTTP handler routes
// both.
func checkProbes(t *testing.T, cfg config.Config, c *corev1.Container) {
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		t.Fatalf("WORKER_HTTP_ADDR=%q: the probes need the HTTP server", cfg.HTTPAddr)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		// The kubelet probes and Prometheus connect to the pod IP.
		t.Errorf("WORKER_HTTP_ADDR=%q: the probes and scrapes reach the pod on its IP; listen on every interface (:%s)", cfg.HTTPAddr, port)
	}
	base := serveWorker(t, cfg, testredis.Start(t))
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s probe on %s, want %s", p.name, g.Path, p.path)
		}
		if n := containerPort(c, g.Port); strconv.Itoa(int(n)) != port {
			t.Errorf("%s probe port %s is container port %d; the worker listens on %s", p.name, g.Port.String(), n, cfg.HTTPAddr)
		}
		resp, err := http.Get(base + g.Path)
		if err != nil {
			t.Errorf("%s probe: GET %s: %v", p.name, g.Path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("%s probe: GET %s = %d: the worker does not serve it", p.name, g.Path, resp.StatusCode)
		}
		if p.probe.TimeoutSeconds < 1 || p.probe.PeriodSeconds < 1 {
			t.Errorf("%s probe: set timeoutSeconds and periodSeconds", p.name)
		}
	}
}

// serveWorker runs the worker with cfg (worker.Run, as cmd/worker does, with
// an HTTP server and a registry of its own) on srv instead of the Redis cfg
// names, and returns the base URL of its HTTP server; it stops when the test
// ends.
func serveWorker(t *testing.T, cfg config.Config, srv *testredis.Server) string {
	t.Helper()
	cfg.Redis = config.Redis{RedisURL: srv.URL()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, cfg, worker.NewMux(), worker.WithListener(l), worker.WithLogger(slog.New(slog.DiscardHandler)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run = %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

// checkSecurity holds every pod in the output to the restricted Pod
// Security Standard and more: non-root, no privilege escalation, no
// capabilities, RuntimeDefault seccomp, read-only root, no API token.
func checkSecurity(t *testing.T, m *manifests) {
	for name, pod := range pods(m) {
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
			t.Errorf("%s: runs as UID 0", name)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile is not RuntimeDefault", name)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", name)
		}
		if sa, ok := m.ServiceAccounts[pod.ServiceAccountName]; ok && (sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken) {
			t.Errorf("%s: ServiceAccount %s mounts its token", name, sa.Name)
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("%s: shares a host namespace", name)
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			sc := c.SecurityContext
			id := name + "/" + c.Name
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", id)
				continue
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: readOnlyRootFilesystem is not true", id)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation is not false", id)
			case sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s: privileged", id)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
				t.Errorf("%s: capabilities do not drop ALL (or add some)", id)
			case sc.RunAsUser != nil && *sc.RunAsUser == 0:
				t.Errorf("%s: runs as UID 0", id)
			case sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Errorf("%s: seccompProfile %s", id, sc.SeccompProfile.Type)
			}
		}
	}
	for name, ns := range m.Namespaces {
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", name)
		}
	}
}

// checkResources: every container requests and is limited in CPU and
// memory, requests within limits.
func checkResources(t *testing.T, m *manifests) {
	for name, pod := range pods(m) {
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[r]
				lim, okLim := c.Resources.Limits[r]
				if !okReq || !okLim {
					t.Errorf("%s/%s: %s request or limit missing", name, c.Name, r)
					continue
				}
				if req.Cmp(lim) > 0 {
					t.Errorf("%s/%s: %s request %s above the limit %s", name, c.Name, r, req.String(), lim.String())
				}
			}
		}
	}
}

// checkNetworkPolicy: the worker pods accept only their HTTP port and reach
// only DNS and Redis, on Redis's port from REDIS_URL.
func checkNetworkPolicy(t *testing.T, m *manifests, cfg config.Config, podLabels map[string]string) {
	np, ok := m.NetworkPolicies["streamworker"]
	if !ok {
		t.Fatal("no NetworkPolicy streamworker")
	}
	if !subset(np.Spec.PodSelector.MatchLabels, podLabels) {
		t.Errorf("NetworkPolicy selects %v, not the worker pods", np.Spec.PodSelector.MatchLabels)
	}
	var ingress, egress bool
	for _, pt := range np.Spec.PolicyTypes {
		ingress = ingress || pt == "Ingress"
		egress = egress || pt == "Egress"
	}
	if !ingress || !egress {
		t.Errorf("policyTypes %v: want Ingress and Egress", np.Spec.PolicyTypes)
	}
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.String() != "http" {
			t.Errorf("ingress rule %+v: only the http port may be open", r)
		}
	}
	u, err := url.Parse(cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	redisPort := u.Port()
	if redisPort == "" {
		redisPort = "6379"
	}
	var dns, redis bool
	for _, r := range np.Spec.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("egress rule %+v opens every destination or port", r)
			continue
		}
		for _, p := range r.Ports {
			switch port := p.Port.String(); port {
			case "53":
				dns = true
			case redisPort:
				redis = true
			case "6379", "6380":
			default:
				t.Errorf("egress to port %s: neither DNS nor Redis", port)
			}
		}
	}
	if !dns || !redis {
		t.Errorf("egress allows DNS %v, Redis port %s %v: want both", dns, redisPort, redis)
	}
	// The in-cluster Redis, when the overlay has one, is a peer the policy
	// names.
	if ss, ok := m.StatefulSets["redis"]; ok {
		var reached bool
		for _, r := range np.Spec.Egress {
			for _, peer := range r.To {
				if peer.PodSelector != nil && subset(peer.PodSelector.MatchLabels, ss.Spec.Template.Labels) {
					reached = true
				}
			}
		}
		if !reached {
			t.Errorf("no egress rule selects the Redis pods %v", ss.Spec.Template.Labels)
		}
	}
}

// pods are the pod templates in the output, by workload.
func pods(m *manifests) map[string]*corev1.PodSpec {
	out := map[string]*corev1.PodSpec{}
	for n, d := range m.Deployments {
		out["Deployment/"+n] = &d.Spec.Template.Spec
	}
	for n, s := range m.StatefulSets {
		out["StatefulSet/"+n] = &s.Spec.Template.Spec
	}
	for n, j := range m.Jobs {
		out["Job/"+n] = &j.Spec.Template.Spec
	}
	return out
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func hasPort(c *corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
}

// containerPort resolves a probe's port, by name or number.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
