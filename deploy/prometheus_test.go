package deploy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

const (
	// rulesFile is the source of the alert rules (docs/runbook.md).
	rulesFile     = "prometheus/streamworker.rules.yaml"
	rulesTestFile = "prometheus/streamworker.rules_test.yaml"
	// The copies: Helm reads files only inside the chart, kustomize only
	// below the overlay.
	chartRulesFile     = chartDir + "/rules/streamworker.rules.yaml"
	kustomizeRulesFile = "k8s/overlays/prod/prometheusrule.yaml"
	// rulesJob is the selector every metric of the rules file has: the
	// scrape job of the ServiceMonitor of deploy/k8s.
	rulesJob   = `job="streamworker-metrics"`
	runbook    = "../docs/runbook.md"
	runbookURL = "https://github.com/streamworker/streamworker/blob/main/docs/runbook.md#"
)

var update = flag.Bool("update", false, "write the copies of "+rulesFile+" (TestAlertRuleCopies)")

// promtool is the path of promtool. Without one the test is skipped, except
// under CI, where it fails: scripts/test-deps.sh installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("promtool is not on PATH (scripts/test-deps.sh installs it: apt-get install --no-install-recommends prometheus)")
		}
		t.Fatal("promtool is not on PATH, and CI is set: scripts/test-deps.sh installs it (apt-get install --no-install-recommends prometheus)")
	}
	return p
}

// runPromtool runs promtool with args in prometheus/ and fails the test with
// its output when it fails.
func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = "prometheus"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// readRules decodes a rules file strictly into the Prometheus Operator's
// types, which have every field of a Prometheus rules file.
func readRules(t *testing.T, path string) []monitoringv1.RuleGroup {
	t.Helper()
	raw, err := yaml.YAMLToJSONStrict([]byte(readText(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var f struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f.Groups
}

// withSelector is groups with sel in place of rulesJob in every expression.
func withSelector(groups []monitoringv1.RuleGroup, sel string) []monitoringv1.RuleGroup {
	var out []monitoringv1.RuleGroup
	for _, g := range groups {
		g.Rules = slices.Clone(g.Rules)
		for i := range g.Rules {
			g.Rules[i].Expr.StrVal = strings.ReplaceAll(g.Rules[i].Expr.StrVal, rulesJob, sel)
		}
		out = append(out, g)
	}
	return out
}

// TestAlertRules: the rules are valid and pass their unit tests (promtool);
// every alert reads only metrics the worker serves, from the scrape job
// alone, has a severity, a summary, a description and a runbook_url to its
// own section of docs/runbook.md, which has a section for no other alert.
func TestAlertRules(t *testing.T) {
	t.Run("PromtoolCheck", func(t *testing.T) { runPromtool(t, "check", "rules", strings.TrimPrefix(rulesFile, "prometheus/")) })
	t.Run("PromtoolTest", func(t *testing.T) { runPromtool(t, "test", "rules", strings.TrimPrefix(rulesTestFile, "prometheus/")) })

	groups := readRules(t, rulesFile)
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(readText(t, runbook), -1) {
		sections[m[1]] = true
	}
	var alerts []string
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%s): the copies and the runbook hold alerts only", g.Name, r.Record)
				continue
			}
			alerts = append(alerts, r.Alert)
			t.Run(r.Alert, func(t *testing.T) {
				expr := r.Expr.String()
				checkServed(t, r.Alert, expr)
				checkSelectors(t, expr, rulesJob)
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("severity %q, want warning or critical", s)
				}
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("no %s annotation", a)
					}
				}
				if want := runbookURL + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
					t.Errorf("runbook_url %q, want %q", r.Annotations["runbook_url"], want)
				}
				if !sections[r.Alert] {
					t.Errorf("docs/runbook.md has no section \"## %s\"", r.Alert)
				}
			})
		}
	}
	for s := range sections {
		if !slices.Contains(alerts, s) {
			t.Errorf("docs/runbook.md has a section for %s, which is not an alert of %s", s, rulesFile)
		}
	}
}

// checkSelectors: every metric of expr is selected with sel, so that the
// rules read the worker's scrape job alone and the chart can put the
// release's job and namespace in its place.
func checkSelectors(t *testing.T, expr, sel string) {
	t.Helper()
	for _, name := range promMetrics(expr) {
		for _, m := range regexp.MustCompile(`\b`+regexp.QuoteMeta(name)+`\b(\{[^}]*\})?`).FindAllStringSubmatch(expr, -1) {
			if !strings.Contains(m[1], sel) {
				t.Errorf("%s%s does not select %s", name, m[1], sel)
			}
		}
	}
}

// TestAlertRuleCopies: the chart's copy of the rules file is the same
// bytes, and the prod overlay's PrometheusRule is the file's groups,
// comments and all. With -update it writes both.
func TestAlertRuleCopies(t *testing.T) {
	src := readText(t, rulesFile)
	for _, c := range []struct{ path, want string }{
		{chartRulesFile, src},
		{kustomizeRulesFile, kustomizeRules(t, src)},
	} {
		if *update {
			if err := os.WriteFile(c.path, []byte(c.want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, string(got)); d != "" {
			t.Errorf("%s is not generated from %s; run `go test -run TestAlertRuleCopies -update` in deploy/ (-want +got):\n%s", c.path, rulesFile, d)
		}
	}
}

// kustomizeRules is the prod overlay's PrometheusRule: the groups of the
// rules file src, its lines from "groups:" on, indented under spec.
func kustomizeRules(t *testing.T, src string) string {
	t.Helper()
	i := strings.Index(src, "\ngroups:\n")
	if i < 0 {
		t.Fatalf("%s: no top-level groups:", rulesFile)
	}
	var b strings.Builder
	b.WriteString(`# Generated from deploy/prometheus/streamworker.rules.yaml, the source of the
# alerts (docs/runbook.md): edit that file, then run
# ` + "`go test -run TestAlertRuleCopies -update`" + ` in deploy/. Add the labels your
# Prometheus's ruleSelector wants with a patch.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: streamworker
  labels:
    app.kubernetes.io/name: streamworker
spec:
`)
	for _, line := range strings.SplitAfter(src[i+1:], "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.String()
}
