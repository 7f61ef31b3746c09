package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartv2util "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"sigs.k8s.io/yaml"

	"github.com/streamworker/streamworker/wire"
)

const (
	chartDir = "helm/streamworker"
	// prodValues is the chart's counterpart of k8s/overlays/prod.
	prodValues = "helm/values-prod.yaml"
	// release is the release name of the tests: it gives the kustomize
	// base's object names.
	release = "streamworker"
)

// chartRelease is one `helm install`: a release name and the values files
// or inline values, in the order of -f flags.
type chartRelease struct {
	name   string
	values []string // YAML documents
}

// helmTemplate renders the chart as `helm install --dry-run` would, with the
// Helm SDK: load the chart, check its kubeVersion, coalesce the values with
// values.yaml, validate them against values.schema.json and render every
// template. It renders strictly, as `helm lint --strict` does: a template
// that reads a value values.yaml does not have fails. It returns the
// rendered files by name, or the error helm would stop with.
func helmTemplate(r chartRelease) (map[string]string, error) {
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		return nil, err
	}
	// The cluster is of the version whose API types the tests decode into
	// (k8s.io/api v0.37); the SDK's default is an old one in test builds.
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = common.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
	if !chartv2util.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, have %s", ch.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	vals := map[string]any{}
	for _, v := range r.values {
		m, err := common.ReadValues([]byte(v))
		if err != nil {
			return nil, err
		}
		vals = loader.MergeMaps(vals, m)
	}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: r.name, Namespace: "streamworker", Revision: 1, IsInstall: true}, caps, false)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, top)
}

// renderChart renders r and decodes every object strictly into its Go
// type, as render does for a kustomization; it returns them and the
// rendered NOTES.txt.
func renderChart(t *testing.T, r chartRelease) (*manifests, string) {
	t.Helper()
	files, err := helmTemplate(r)
	if err != nil {
		t.Fatalf("helm install %s: %v", r.name, err)
	}
	m := newManifests(chartDir)
	var notes string
	for _, file := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(file, "/NOTES.txt") {
			notes = files[file]
			continue
		}
		for _, doc := range releaseutil.SplitManifests(files[file]) {
			raw, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v\n%s", file, err, doc)
			}
			if string(raw) == "null" {
				continue // a template that renders nothing with these values
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name, Namespace string
				} `json:"metadata"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			m.add(t, head.APIVersion, head.Kind, head.Metadata.Namespace, head.Metadata.Name, raw)
		}
	}
	return m, notes
}

// readText is the content of a file of this module.
func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// prodExternal are the Secrets the prod overlay and values-prod.yaml expect.
var prodExternal = map[string][]string{
	"streamworker-redis":      {"url"},
	"streamworker-redis-tls":  {"ca.crt"},
	"streamworker-keda-redis": {"address", "username", "password", "tls", "ca"},
}

// TestChart holds the chart to every check of the kustomize overlays
// (checkManifests), with the default values and with values-prod.yaml,
// then to what only the chart has.
func TestChart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string // files
		ov     overlay
	}{
		{
			name: "Defaults",
			ov:   overlay{dir: chartDir, external: map[string][]string{"streamworker-redis": {"url"}}, redisURL: "redis://worker:x@redis:6379/0"},
		},
		{
			name:   "Prod",
			values: []string{prodValues},
			ov: overlay{
				dir: chartDir + " -f " + prodValues, external: prodExternal, redisURL: "rediss://worker:x@redis.example.com:6380/0", keda: true, monitor: true,
				rules: `namespace="streamworker", ` + rulesJob,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chartRelease{name: release}
			for _, f := range tc.values {
				r.values = append(r.values, readText(t, f))
			}
			m, notes := renderChart(t, r)
			checkManifests(t, m, tc.ov)

			d := m.Deployments["streamworker"]
			pod := &d.Spec.Template.Spec
			c := container(t, pod.Containers, "worker")
			env := resolveEnv(t, m, tc.ov.external, c)
			loadConfig(t, m, tc.ov.redisURL, pod, c, env)

			t.Run("ConfigChecksum", func(t *testing.T) {
				if d.Spec.Template.Annotations["checksum/config"] == "" {
					t.Error("the pod template has no checksum/config annotation: a changed setting would not roll the pods")
				}
			})
			t.Run("Notes", func(t *testing.T) { checkNotes(t, notes, m, tc.ov.external) })
		})
	}
}

// checkPrometheusRule: the PrometheusRule streamworker holds the alerts of
// the rules file (docs/runbook.md), their metrics selected with sel: the
// scrape job of the ServiceMonitor's targets, and for the chart its
// release's namespace.
func checkPrometheusRule(t *testing.T, m *manifests, sel string) {
	pr, ok := m.PrometheusRules["streamworker"]
	if !ok {
		t.Fatal("no PrometheusRule streamworker")
	}
	if d := cmp.Diff(withSelector(readRules(t, rulesFile), sel), pr.Spec.Groups); d != "" {
		t.Errorf("the rules are not those of %s with %s (-want +got):\n%s", rulesFile, sel, d)
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			checkSelectors(t, r.Expr.String(), sel)
		}
	}
}

// readmeMetrics are the metric names of the metrics table in docs/operations.md.
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(streamworker_[a-z_]+)`").FindAllStringSubmatch(readText(t, "../docs/operations.md"), -1) {
		out[m[1]] = true
	}
	if !out["streamworker_group_lag"] {
		t.Fatalf("no metrics table in docs/operations.md: %v", out)
	}
	return out
}

// checkNotes: NOTES.txt tells how to check the release works, with the
// names it rendered, and names every Secret the user must create.
func checkNotes(t *testing.T, notes string, m *manifests, external map[string][]string) {
	want := []string{
		"kubectl -n streamworker rollout status deployment/streamworker",
		"port-forward svc/streamworker-metrics 8080",
		"/readyz",
		"/metrics",
	}
	if len(m.ScaledObjects) > 0 {
		want = append(want, "get scaledobject,hpa")
	}
	for s := range external {
		want = append(want, s)
	}
	for _, w := range want {
		if !strings.Contains(notes, w) {
			t.Errorf("NOTES.txt does not say %q:\n%s", w, notes)
		}
	}
}

// TestChartMatchesKustomize: the chart with values-prod.yaml and the
// kustomize prod overlay run the same worker: the same variables from the
// same sources, probes, security contexts, ports, volumes, resources and
// grace period, and KEDA and the NetworkPolicy see Redis the same way.
func TestChartMatchesKustomize(t *testing.T) {
	kust := render(t, "k8s/overlays/prod")
	chart, _ := renderChart(t, chartRelease{name: release, values: []string{readText(t, prodValues)}})
	kd, hd := kust.Deployments["streamworker"], chart.Deployments["streamworker"]
	if kd == nil || hd == nil {
		t.Fatalf("Deployment streamworker: kustomize %v, chart %v", kd != nil, hd != nil)
	}
	kpod, hpod := &kd.Spec.Template.Spec, &hd.Spec.Template.Spec
	kc, hc := container(t, kpod.Containers, "worker"), container(t, hpod.Containers, "worker")

	t.Run("Env", func(t *testing.T) {
		kenv, henv := resolveEnv(t, kust, prodExternal, kc), resolveEnv(t, chart, prodExternal, hc)
		// The kustomize base leaves the plugins' prefix (and, without the
		// users plugin, DATABASE_URL) to cmd/worker's defaults; the chart
		// always says them.
		for _, v := range []string{"WORKER_PLUGINS", "WORKER_PLUGINS_PREFIX", "DATABASE_URL"} {
			if _, ok := kenv[v]; !ok {
				delete(henv, v)
			}
		}
		if d := cmp.Diff(sortedKeys(kenv), sortedKeys(henv)); d != "" {
			t.Errorf("env names (-kustomize +chart):\n%s", d)
		}
		if d := cmp.Diff(kenv, henv, cmp.AllowUnexported(envSource{})); d != "" {
			t.Errorf("env (-kustomize +chart):\n%s", d)
		}
	})
	for _, c := range []struct {
		name       string
		kust, helm any
	}{
		{"ReadinessProbe", kc.ReadinessProbe, hc.ReadinessProbe},
		{"LivenessProbe", kc.LivenessProbe, hc.LivenessProbe},
		{"ContainerSecurityContext", kc.SecurityContext, hc.SecurityContext},
		{"PodSecurityContext", kpod.SecurityContext, hpod.SecurityContext},
		{"AutomountServiceAccountToken", kpod.AutomountServiceAccountToken, hpod.AutomountServiceAccountToken},
		{"TerminationGracePeriodSeconds", kpod.TerminationGracePeriodSeconds, hpod.TerminationGracePeriodSeconds},
		{"Image", kc.Image, hc.Image},
		{"Ports", kc.Ports, hc.Ports},
		{"VolumeMounts", kc.VolumeMounts, hc.VolumeMounts},
		{"Volumes", kpod.Volumes, hpod.Volumes},
		{"Resources", kc.Resources, hc.Resources},
		{"Strategy", kd.Spec.Strategy, hd.Spec.Strategy},
		{"ScaledObject", kust.ScaledObjects["streamworker"].Spec, chart.ScaledObjects["streamworker"].Spec},
		{"TriggerAuthentication", kust.TriggerAuths["streamworker-keda-redis"].Spec, chart.TriggerAuths["streamworker-keda-redis"].Spec},
		{"NetworkPolicyIngress", kust.NetworkPolicies["streamworker"].Spec.Ingress, chart.NetworkPolicies["streamworker"].Spec.Ingress},
		{"NetworkPolicyEgress", kust.NetworkPolicies["streamworker"].Spec.Egress, chart.NetworkPolicies["streamworker"].Spec.Egress},
		{"PDBMaxUnavailable", kust.PDBs["streamworker"].Spec.MaxUnavailable, chart.PDBs["streamworker"].Spec.MaxUnavailable},
		{"ServicePorts", kust.Services["streamworker-metrics"].Spec.Ports, chart.Services["streamworker-metrics"].Spec.Ports},
		{"ServiceMonitorEndpoints", kust.ServiceMonitors["streamworker"].Spec.Endpoints, chart.ServiceMonitors["streamworker"].Spec.Endpoints},
	} {
		t.Run(c.name, func(t *testing.T) {
			if d := cmp.Diff(c.kust, c.helm); d != "" {
				t.Errorf("(-kustomize +chart):\n%s", d)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestChartPartitionedKEDA: with partitions, KEDA watches each partition's
// stream, named as the worker names it, not the logical stream no one
// writes to.
func TestChartPartitionedKEDA(t *testing.T) {
	m, _ := renderChart(t, chartRelease{name: release, values: []string{`
worker: {streams: [sw:orders, sw:mail], partitions: 3}
keda: {enabled: true}
`}})
	var want []string
	for _, s := range []string{"sw:orders", "sw:mail"} {
		for _, p := range wire.PartitionStreams(s, 3) {
			want = append(want, p+" lag", p+" pending")
		}
	}
	var got []string
	names := map[string]bool{}
	for _, tr := range m.ScaledObjects["streamworker"].Spec.Triggers {
		kind := "lag"
		if tr.Metadata["pendingEntriesCount"] != "" {
			kind = "pending"
		}
		got = append(got, tr.Metadata["stream"]+" "+kind)
		if names[tr.Name] {
			t.Errorf("two triggers named %s", tr.Name)
		}
		names[tr.Name] = true
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("triggers (-want +got):\n%s", d)
	}
}

// TestChartReleaseName: another release name renames every object, and
// each object still finds the others (selectors, references), so two
// releases can share a namespace.
func TestChartReleaseName(t *testing.T) {
	m, notes := renderChart(t, chartRelease{name: "orders", values: []string{`
keda: {enabled: true}
serviceMonitor: {enabled: true}
prometheusRule: {enabled: true}
`}})
	d, ok := m.Deployments["orders-streamworker"]
	if !ok {
		t.Fatalf("no Deployment orders-streamworker: %v", sortedKeys(m.Deployments))
	}
	pod := d.Spec.Template
	if pod.Labels["app.kubernetes.io/instance"] != "orders" || !subset(d.Spec.Selector.MatchLabels, pod.Labels) ||
		d.Spec.Selector.MatchLabels["app.kubernetes.io/instance"] != "orders" {
		t.Errorf("the Deployment's selector %v does not select this release's pods %v alone", d.Spec.Selector.MatchLabels, pod.Labels)
	}
	c := container(t, pod.Spec.Containers, "worker")
	resolveEnv(t, m, map[string][]string{"streamworker-redis": {"url"}}, c)
	if _, ok := m.ServiceAccounts[pod.Spec.ServiceAccountName]; !ok {
		t.Errorf("ServiceAccount %s is not rendered", pod.Spec.ServiceAccountName)
	}
	svc, ok := m.Services["orders-streamworker-metrics"]
	if !ok || !subset(svc.Spec.Selector, pod.Labels) {
		t.Errorf("Service orders-streamworker-metrics (%v) does not select the pods", ok)
	}
	if np, ok := m.NetworkPolicies["orders-streamworker"]; !ok || !subset(np.Spec.PodSelector.MatchLabels, pod.Labels) {
		t.Errorf("NetworkPolicy orders-streamworker (%v) does not select the pods", ok)
	}
	if pdb, ok := m.PDBs["orders-streamworker"]; !ok || !subset(pdb.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("PodDisruptionBudget orders-streamworker (%v) does not select the pods", ok)
	}
	so, ok := m.ScaledObjects["orders-streamworker"]
	if !ok || so.Spec.ScaleTargetRef.Name != "orders-streamworker" {
		t.Fatalf("ScaledObject orders-streamworker (%v) does not scale the Deployment", ok)
	}
	for _, tr := range so.Spec.Triggers {
		if _, ok := m.TriggerAuths[tr.AuthenticationRef.Name]; !ok {
			t.Errorf("trigger %s: TriggerAuthentication %s is not rendered", tr.Name, tr.AuthenticationRef.Name)
		}
	}
	if sm, ok := m.ServiceMonitors["orders-streamworker"]; !ok || !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("ServiceMonitor orders-streamworker (%v) does not select the metrics Service", ok)
	}
	if pr, ok := m.PrometheusRules["orders-streamworker"]; !ok || !strings.Contains(pr.Spec.Groups[0].Rules[0].Expr.String(), `job="orders-streamworker-metrics"`) {
		t.Errorf("PrometheusRule orders-streamworker (%v) does not select the release's metrics", ok)
	}
	if !strings.Contains(notes, "deployment/orders-streamworker") {
		t.Errorf("NOTES.txt does not name the release's Deployment:\n%s", notes)
	}
}

// TestChartKEDAWeightedStreams: a stream's weight (sw:orders=6) is not
// part of the name KEDA watches.
func TestChartKEDAWeightedStreams(t *testing.T) {
	m, _ := renderChart(t, chartRelease{name: release, values: []string{`
worker: {streams: ['sw:orders=6', sw:mail]}
keda: {enabled: true}
`}})
	var got []string
	for _, tr := range m.ScaledObjects["streamworker"].Spec.Triggers {
		got = append(got, tr.Metadata["stream"])
	}
	if d := cmp.Diff([]string{"sw:orders", "sw:orders", "sw:mail", "sw:mail"}, got); d != "" {
		t.Errorf("KEDA streams (-want +got):\n%s", d)
	}
}
