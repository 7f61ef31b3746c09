package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "grafana/streamworker.json"

// dashboard is what the tests read of a Grafana dashboard.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Query      any         `json:"query"` // a string, or the Prometheus editor's object
			Definition string      `json:"definition"`
			Datasource *datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardVar is the data source every query of the dashboard uses.
var dashboardVar = datasource{Type: "prometheus", UID: "${datasource}"}

// dashboardSel is the selector every metric of the dashboard has: its
// namespace and job variables.
const dashboardSel = `namespace=~"$namespace", job=~"$job"`

// TestDashboard: the Grafana dashboard imports into Grafana 10 or later,
// chooses its Prometheus with a datasource variable and its streams and
// types with label_values variables, and reads only — and every one of —
// the metrics the worker serves, through valid PromQL.
func TestDashboard(t *testing.T) {
	raw := []byte(readText(t, dashboardFile))
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 38 {
		t.Errorf("schemaVersion %d: Grafana 10 has 38 and later", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable import", d.UID, d.Title)
	}

	// exprs are every query, by where it is.
	exprs := map[string]string{}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("variable datasource: type %q, query %v; want a datasource variable of query prometheus", v.Type, v.Query)
			}
			continue
		}
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || *v.Datasource != dashboardVar {
			t.Errorf("variable %s: datasource %v, want %v", v.Name, v.Datasource, dashboardVar)
		}
		q := v.Definition
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		} else if s, ok := v.Query.(string); ok {
			q = s
		}
		if q != v.Definition {
			t.Errorf("variable %s: query %q and definition %q differ", v.Name, q, v.Definition)
		}
		m := regexp.MustCompile(`^label_values\((.+), (\w+)\)$`).FindStringSubmatch(q)
		if m == nil || m[2] != v.Name {
			t.Errorf("variable %s: query %q, want label_values(<metric>, %s)", v.Name, q, v.Name)
			continue
		}
		exprs["variable "+v.Name] = m[1]
	}
	for _, name := range []string{"datasource", "namespace", "job", "stream", "type"} {
		if _, ok := vars[name]; !ok {
			t.Errorf("no variable %s", name)
		}
	}

	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if other, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q); every panel needs an id of its own", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if p.Datasource == nil || *p.Datasource != dashboardVar {
				t.Errorf("panel %q: datasource %v, want %v", p.Title, p.Datasource, dashboardVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				where := fmt.Sprintf("panel %q, query %s", p.Title, q.RefID)
				if q.Datasource != nil && *q.Datasource != dashboardVar {
					t.Errorf("%s: datasource %v, want %v", where, q.Datasource, dashboardVar)
				}
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: no expr", where)
					continue
				}
				exprs[where] = q.Expr
			}
		}
	}
	walk(d.Panels)

	used := map[string]bool{}
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		expr := exprs[where]
		checkServed(t, where, expr)
		if where != "variable namespace" && where != "variable job" {
			checkSelectors(t, expr, dashboardSel)
		}
		for _, name := range promMetrics(expr) {
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
		}
	}
	t.Run("EveryMetric", func(t *testing.T) {
		for name := range servedMetrics(t) {
			if strings.HasPrefix(name, "streamworker_") && !used[name] {
				t.Errorf("no panel shows %s", name)
			}
		}
	})
	t.Run("Promtool", func(t *testing.T) { checkPromQL(t, exprs) })
}

// grafanaVars are the values the queries' Grafana variables stand for when
// promtool parses them.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"$namespace", ".*", "$job", ".*", "$stream", ".*", "$type", ".*",
)

// checkPromQL parses every expression with promtool, as recording rules of
// a rules file of its own (`promtool check rules`).
func checkPromQL(t *testing.T, exprs map[string]string) {
	t.Helper()
	p := promtool(t)
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	wheres := slices.Sorted(maps.Keys(exprs))
	for i, where := range wheres {
		e := grafanaVars.Replace(exprs[where])
		if strings.Contains(e, "$") {
			t.Errorf("%s: a variable promtool cannot stand in for: %s", where, exprs[where])
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%03d", i), Expr: e})
	}
	doc, err := json.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.json") // JSON is YAML
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p, "check", "rules", f).CombinedOutput(); err != nil {
		for i, where := range wheres {
			out = bytes.ReplaceAll(out, fmt.Appendf(nil, "dashboard:query_%03d", i), []byte(where))
		}
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
