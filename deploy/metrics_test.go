package deploy

import (
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// served are the metrics a worker serves on /metrics, by name, true for a
// histogram; servedMetrics fills it once for every test.
var served struct {
	sync.Mutex
	names map[string]bool
}

// servedMetrics are the metrics the worker serves, the strongest evidence
// there is short of a production scrape: the /metrics page of a worker run
// against a real Redis (the Go and process collectors, the in-flight gauge
// and the stream gauges it reads from Redis at scrape time), and every
// metric worker.NewMetrics registers — the counters and the histogram,
// whose vectors appear on the page only once something is counted. The
// value is true for a histogram, whose series are name_bucket, name_sum and
// name_count. The scrape's own "up" is not among them.
func servedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	served.Lock()
	defer served.Unlock()
	if served.names != nil {
		return served.names
	}
	names := map[string]bool{}
	page := scrapeWorker(t, false)
	for name, mf := range page.families {
		names[name] = mf.GetType() == dto.MetricType_HISTOGRAM
	}
	rec := &describer{names: map[string]bool{}}
	worker.NewMetrics(rec)
	maps.Copy(names, rec.names)
	served.names = names
	return names
}

// describer is a prometheus.Registerer that records the names and kinds of
// what is registered with it, from the collectors' descriptions.
type describer struct{ names map[string]bool }

// descName reads the name of a metric from its description, which has no
// accessor for it.
var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	_, histogram := c.(*prometheus.HistogramVec)
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := descName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = histogram
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// workerPage is one scrape of a worker.
type workerPage struct {
	families map[string]*dto.MetricFamily
	ready    int // status of GET /readyz at the same time
}

// scrapeWorker runs the worker (worker.Run, as cmd/worker does, with its
// own registry and HTTP server) on two streams of a Redis of its own and
// scrapes it once its stream gauges are there; with redisDown, it kills
// Redis first and scrapes again once /readyz fails.
func scrapeWorker(t *testing.T, redisDown bool) workerPage {
	t.Helper()
	srv := testredis.Start(t)
	cfg := config.Default()
	// Partitioned, so that the partition owner gauge is served too.
	cfg.Streams, cfg.Group, cfg.Consumer, cfg.Partitions = []string{"sw:a", "sw:b"}, "workers", "c1", 2
	cfg.Block, cfg.PromoteInterval, cfg.ShutdownTimeout = 50*time.Millisecond, 10*time.Millisecond, time.Second
	base := serveWorker(t, cfg, srv)
	scrape := func() (workerPage, error) {
		page := workerPage{ready: get(t, base+"/readyz").StatusCode}
		resp := get(t, base+"/metrics")
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		page.families, err = p.TextToMetricFamilies(resp.Body)
		return page, err
	}
	until := func(what string, ok func(workerPage) bool) workerPage {
		deadline := time.Now().Add(10 * time.Second)
		for {
			page, err := scrape()
			if err != nil {
				t.Fatalf("parsing /metrics: %v", err)
			}
			if ok(page) {
				return page
			}
			if time.Now().After(deadline) {
				t.Fatalf("the worker did not get to %s in 10s: ready %d, metrics %v", what, page.ready, slices.Sorted(maps.Keys(page.families)))
			}
			time.Sleep(20 * time.Millisecond) // polling a deadline
		}
	}
	page := until("serving its stream gauges", func(p workerPage) bool {
		n := len(cfg.Streams) * cfg.Partitions
		return p.ready == http.StatusOK && len(p.families["streamworker_group_lag"].GetMetric()) == n &&
			len(p.families["streamworker_partition_owner"].GetMetric()) == n
	})
	if !redisDown {
		return page
	}
	srv.Kill(t)
	return until("failing /readyz", func(p workerPage) bool { return p.ready == http.StatusServiceUnavailable })
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(url, "/metrics") {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp
}

// TestMetricsDocumented: the metrics table of docs/operations.md, which the
// alert rules, the dashboard and the Helm test read, names exactly the
// worker's own metrics.
func TestMetricsDocumented(t *testing.T) {
	var own []string
	for name := range servedMetrics(t) {
		if strings.HasPrefix(name, "streamworker_") {
			own = append(own, name)
		}
	}
	slices.Sort(own)
	if d := cmp.Diff(slices.Sorted(maps.Keys(readmeMetrics(t))), own); d != "" {
		t.Errorf("metrics (-docs/operations.md +served by the worker):\n%s", d)
	}
}

// TestStreamGaugesNeedRedis: a worker that reads Redis is ready
// (streamworker_ready, which StreamworkerNotReady watches) and reports the
// dead-letter gauge of every stream, even without dead letters; one that
// cannot still answers scrapes, reports itself not ready, counts its failed
// reads (streamworker_redis_errors_total{op="fetch"}, which
// StreamworkerRedisErrors watches) and reports none of the stream gauges.
func TestStreamGaugesNeedRedis(t *testing.T) {
	t.Run("Up", func(t *testing.T) {
		page := scrapeWorker(t, false)
		var streams []string
		for _, m := range page.families["streamworker_dead_letters"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stream" {
					streams = append(streams, l.GetValue())
				}
			}
		}
		slices.Sort(streams)
		want := slices.Concat(wire.PartitionStreams("sw:a", 2), wire.PartitionStreams("sw:b", 2))
		slices.Sort(want)
		if d := cmp.Diff(want, streams); d != "" {
			t.Errorf("streamworker_dead_letters streams (-want +got):\n%s", d)
		}
		if v := value(page, "streamworker_ready", ""); v != 1 {
			t.Errorf("streamworker_ready = %v while /readyz answers %d, want 1", v, page.ready)
		}
	})
	t.Run("RedisDown", func(t *testing.T) {
		page := scrapeWorker(t, true)
		for _, name := range []string{"streamworker_dead_letters", "streamworker_group_lag", "streamworker_group_pending", "streamworker_delayed"} {
			if mf, ok := page.families[name]; ok {
				t.Errorf("with Redis down the worker still reports %s: %v", name, mf.GetMetric())
			}
		}
		if v := value(page, "streamworker_ready", ""); v != 0 {
			t.Errorf("streamworker_ready = %v while /readyz answers %d, want 0", v, page.ready)
		}
		if v := value(page, "streamworker_redis_errors_total", "fetch"); v == 0 {
			t.Error(`with Redis down streamworker_redis_errors_total{op="fetch"} = 0, want the failed reads counted`)
		}
		if _, ok := page.families["streamworker_in_flight"]; !ok {
			t.Error("with Redis down the worker serves no metrics of its own")
		}
	})
}

// promMetrics returns the metric names a PromQL expression reads (a
// Grafana query's $variables included), sorted, without a PromQL parser:
// it drops strings, label matchers, ranges and grouping labels, and then
// every identifier that is not a keyword and not called is a metric.
func promMetrics(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promBraces.ReplaceAllString(s, "{}")
	s = promRanges.ReplaceAllString(s, "[]")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		if promKeywords[strings.ToLower(name)] || strings.HasPrefix(strings.TrimLeft(s[m[3]:], " \t\n"), "(") {
			continue // an operator, or a function or aggregation
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBraces   = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	// An identifier not inside a number (1e3, 5m), a name or a $variable.
	promIdent    = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
	}
)

func TestPromMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up == 0`, []string{"up"}},
		{`sum by (namespace, job) (up{job="x"}) == 0 or absent(up{job="x"})`, []string{"up"}},
		{`max by (stream) (a{job="x", outcome=~"retried|dead"}) > 0 unless on (stream) sum by (stream) (rate(b_total[5m])) > 0`, []string{"a", "b_total"}},
		{`histogram_quantile(0.99, sum by (le, type) (rate(h_bucket{stream=~"$stream"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`sum(rate(c_total[5m] offset 1h)) without (instance) / 1e3 * 2`, []string{"c_total"}},
		{`x * on (a) group_left (b) y`, []string{"x", "y"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}},
		{`sum(rate(misspelt_metric_totl{job="x"}[5m]))`, []string{"misspelt_metric_totl"}},
		{`vector(1)`, nil},
	} {
		if d := cmp.Diff(tc.want, promMetrics(tc.expr)); d != "" {
			t.Errorf("promMetrics(%q) (-want +got):\n%s", tc.expr, d)
		}
	}
}

// checkServed: every metric expr reads is one the worker serves (a
// histogram through its _bucket, _sum and _count series), or the scrape's
// own up.
func checkServed(t *testing.T, what, expr string) {
	t.Helper()
	names := servedMetrics(t)
	for _, name := range promMetrics(expr) {
		if _, ok := names[name]; ok || name == "up" {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if names[base] { // a histogram's series
			continue
		}
		t.Errorf("%s: %s is not a metric the worker serves (%s)", what, name, expr)
	}
}

// value is the value of the series of name on page, the one whose op label
// is op ("" for a metric without labels); 0 when there is none.
func value(page workerPage, name, op string) float64 {
	for _, m := range page.families[name].GetMetric() {
		have := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "op" {
				have = l.GetValue()
			}
		}
		if have == op {
			return m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return 0
}
