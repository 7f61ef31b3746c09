package deploy

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/streamworker/streamworker/handlers/builtin"
)

const tlsDir = "/etc/streamworker/redis-tls"

// chartSettings are, for every variable the worker reads, values that set
// it and what the container then gets. TestChartSettings fails when the
// config package reads a variable this table (and so the chart) lacks.
var chartSettings = []struct {
	env  string
	set  string // values YAML
	want envSource
}{
	{"REDIS_URL", "redis: {url: {secretName: redis-creds, key: worker-url}}", envSource{secret: "redis-creds", secretKey: "worker-url"}},
	{"REDIS_TLS_CA", "redis: {tls: {secretName: tls, ca: my-ca.pem}}", envSource{value: tlsDir + "/my-ca.pem"}},
	{"REDIS_TLS_CERT", "redis: {tls: {secretName: tls, cert: tls.crt, key: tls.key}}", envSource{value: tlsDir + "/tls.crt"}},
	{"REDIS_TLS_KEY", "redis: {tls: {secretName: tls, cert: tls.crt, key: tls.key}}", envSource{value: tlsDir + "/tls.key"}},
	{"REDIS_CLUSTER_ADDRS", "redis: {clusterAddrs: [node-0:6379, node-1:6379]}", envSource{value: "node-0:6379,node-1:6379"}},
	{"REDIS_SENTINEL_ADDRS", "redis: {sentinel: {addrs: [s-0:26379, s-1:26379], master: main}}", envSource{value: "s-0:26379,s-1:26379"}},
	{"REDIS_SENTINEL_MASTER", "redis: {sentinel: {addrs: [s-0:26379], master: main}}", envSource{value: "main"}},
	{"REDIS_SENTINEL_PASSWORD", "redis: {sentinel: {addrs: [s-0:26379], master: main, password: {secretName: sentinel, key: pw}}}", envSource{secret: "sentinel", secretKey: "pw"}},
	{"REDIS_SCRIPTS", "redis: {scripts: eval}", envSource{value: "eval"}},
	{"WORKER_STREAMS", "worker: {streams: [sw:orders, sw:mail]}", envSource{value: "sw:orders,sw:mail"}},
	{"WORKER_STREAMS", "worker: {streams: ['sw:orders=6', sw:mail]}", envSource{value: "sw:orders=6,sw:mail"}},
	{"WORKER_GROUP", "worker: {group: billing}", envSource{value: "billing"}},
	{"WORKER_CONSUMER", "", envSource{fieldPath: "metadata.name"}},
	{"WORKER_PARTITIONS", "worker: {partitions: 16}", envSource{value: "16"}},
	{"WORKER_PARTITION_LEASE", "worker: {partitionLease: 30s}", envSource{value: "30s"}},
	{"WORKER_GROUP_START", "worker: {groupStart: latest}", envSource{value: "latest"}},
	{"WORKER_CONCURRENCY", "worker: {concurrency: 100000}", envSource{value: "100000"}},
	{"WORKER_FETCH_COUNT", "worker: {fetchCount: 1000}", envSource{value: "1000"}},
	{"WORKER_READ_AHEAD", "worker: {readAhead: 0}", envSource{value: "0"}},
	{"WORKER_BLOCK", "worker: {block: 5s}", envSource{value: "5s"}},
	{"WORKER_PRIORITY", "worker: {priority: strict}", envSource{value: "strict"}},
	{"WORKER_MAX_ATTEMPTS", "worker: {maxAttempts: 9}", envSource{value: "9"}},
	{"WORKER_MAX_MESSAGE_BYTES", "worker: {maxMessageBytes: 1048576}", envSource{value: "1048576"}},
	{"WORKER_RETRY_BASE", "worker: {retryBase: 500ms}", envSource{value: "500ms"}},
	{"WORKER_RETRY_MAX", "worker: {retryMax: 1h}", envSource{value: "1h"}},
	{"WORKER_RETRY_IN_PLACE_MAX", "worker: {retryInPlaceMax: \"0\"}", envSource{value: "0"}},
	{"WORKER_HANDLER_TIMEOUT", "worker: {handlerTimeout: 1m30s}", envSource{value: "1m30s"}},
	{"WORKER_SHUTDOWN_TIMEOUT", "worker: {shutdownTimeout: 55s}", envSource{value: "55s"}},
	{"WORKER_PROMOTE_INTERVAL", "worker: {promoteInterval: 100ms}", envSource{value: "100ms"}},
	{"WORKER_RECLAIM_MIN_IDLE", "worker: {reclaimMinIdle: 5m}", envSource{value: "5m"}},
	{"WORKER_RECLAIM_INTERVAL", "worker: {reclaimInterval: 30s}", envSource{value: "30s"}},
	{"WORKER_RECLAIM_COUNT", "worker: {reclaimCount: 50}", envSource{value: "50"}},
	{"WORKER_CONSUMER_GONE_AFTER", "worker: {consumerGoneAfter: 2h}", envSource{value: "2h"}},
	{"WORKER_DEDUPE_WINDOW", "worker: {dedupeWindow: 10m}", envSource{value: "10m"}},
	{"WORKER_SCHEDULE", "worker: {schedule: 'report.requested 0 3 * * *; cleanup.run @every 5m'}", envSource{value: "report.requested 0 3 * * *; cleanup.run @every 5m"}},
	{"WORKER_SCHEDULE_STREAM", "worker: {scheduleStream: 'sw:jobs'}", envSource{value: "sw:jobs"}},
	{"WORKER_SCHEDULE_TZ", "worker: {scheduleTZ: Europe/Berlin}", envSource{value: "Europe/Berlin"}},
	{"WORKER_SCHEDULE_MISSED", "worker: {scheduleMissed: skip}", envSource{value: "skip"}},
	{"WORKER_RETENTION", "worker: {retention: 24h}", envSource{value: "24h"}},
	{"WORKER_RETENTION", "worker: {retention: '0'}", envSource{value: "0"}},
	{"WORKER_TRIM_INTERVAL", "worker: {trimInterval: 30s}", envSource{value: "30s"}},
	{"WORKER_DLQ_MAXLEN", "worker: {dlqMaxLen: 10000}", envSource{value: "10000"}},
	{"WORKER_DLQ_RETENTION", "worker: {dlqRetention: 168h}", envSource{value: "168h"}},
	{"WORKER_DELAYED_WARN", "worker: {delayedWarn: 50000}", envSource{value: "50000"}},
	{"WORKER_HTTP_ADDR", "worker: {httpPort: 9090}", envSource{value: ":9090"}},
	{"WORKER_PPROF", "worker: {pprof: true}", envSource{value: "true"}},
	{"LOG_LEVEL", "log: {level: debug}", envSource{value: "debug"}},
	{"LOG_FORMAT", "log: {format: text}", envSource{value: "text"}},
	{"WORKER_PLUGINS", "plugins: {enabled: [points, examples]}", envSource{value: "points,examples"}},
	{"WORKER_PLUGINS", "plugins: {enabled: []}", envSource{value: "none"}},
	{"WORKER_PLUGINS_PREFIX", "plugins: {prefix: 'app:plugins:'}", envSource{value: "app:plugins:"}},
	{"DATABASE_URL", "plugins: {enabled: [users], database: {secretName: pg, key: dsn}}", envSource{secret: "pg", secretKey: "dsn"}},
}

// TestChartSettings: every variable of the config package is a documented
// value of the chart (chartSettings), setting it renders it as the worker
// reads it, and the chart renders no variable the worker does not read.
func TestChartSettings(t *testing.T) {
	known := configVars(t)
	covered := map[string]bool{}
	for _, s := range chartSettings {
		covered[s.env] = true
	}
	if d := cmp.Diff(slices.Sorted(maps.Keys(known)), slices.Sorted(maps.Keys(covered))); d != "" {
		t.Errorf("variables the config package reads (-) that the chart does not set (+ for ones it no longer reads):\n%s", d)
	}
	doc := valuesDoc(t)
	external := map[string][]string{"streamworker-redis": {"url"}, "redis-creds": {"worker-url"}, "sentinel": {"pw"}, "pg": {"dsn"}}
	for _, s := range chartSettings {
		t.Run(s.env, func(t *testing.T) {
			for _, path := range leafPaths(t, s.set) {
				if _, ok := doc[path]; !ok {
					t.Errorf("%s is not a key of values.yaml", path)
				}
			}
			m, _ := renderChart(t, chartRelease{name: release, values: []string{s.set}})
			c := container(t, m.Deployments["streamworker"].Spec.Template.Spec.Containers, "worker")
			env := resolveEnv(t, m, external, c)
			if d := cmp.Diff(s.want, env[s.env], cmp.AllowUnexported(envSource{})); d != "" {
				t.Errorf("%s with %s (-want +got):\n%s", s.env, s.set, d)
			}
			for name := range env {
				if !known[name] {
					t.Errorf("the chart renders %s, which the worker does not read", name)
				}
			}
		})
	}
}

// leafPaths are the dotted paths of the scalars and lists in a values
// document.
func leafPaths(t *testing.T, doc string) []string {
	t.Helper()
	var v map[string]any
	if err := yamlv3.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", v)
	return out
}

// freeForm are the values whose keys are the user's (labels, quantities),
// not the chart's.
var freeForm = []string{"resources.requests", "resources.limits", "networkPolicy.redisPodLabels", "networkPolicy.dnsPodLabels"}

// valuesDoc returns every key of values.yaml by dotted path, with the
// comment above it.
func valuesDoc(t *testing.T) map[string]string {
	t.Helper()
	var root yamlv3.Node
	if err := yamlv3.Unmarshal([]byte(readText(t, chartDir+"/values.yaml")), &root); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, n *yamlv3.Node)
	walk = func(prefix string, n *yamlv3.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := prefix + k.Value
			out[path] = k.HeadComment
			if v.Kind == yamlv3.MappingNode && !slices.Contains(freeForm, path) {
				walk(path+".", v)
			}
		}
	}
	walk("", root.Content[0])
	return out
}

// TestChartValuesDocumented: values.yaml documents every key it has, and
// the schema knows exactly those keys (a key the schema lacks is refused at
// install; a key values.yaml lacks is undocumented).
func TestChartValuesDocumented(t *testing.T) {
	doc := valuesDoc(t)
	for path, comment := range doc {
		if strings.TrimSpace(comment) == "" {
			t.Errorf("values.yaml: %s has no comment above it", path)
		}
	}
	var schema jsonSchema
	if err := json.Unmarshal([]byte(readText(t, chartDir+"/values.schema.json")), &schema); err != nil {
		t.Fatal(err)
	}
	inSchema := map[string]bool{}
	var walk func(prefix string, s jsonSchema)
	walk = func(prefix string, s jsonSchema) {
		for k, sub := range s.Properties {
			inSchema[prefix+k] = true
			if !slices.Contains(freeForm, prefix+k) {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", schema)
	if d := cmp.Diff(slices.Sorted(maps.Keys(doc)), slices.Sorted(maps.Keys(inSchema))); d != "" {
		t.Errorf("keys (-values.yaml +values.schema.json):\n%s", d)
	}
}

type jsonSchema struct {
	Properties map[string]jsonSchema `json:"properties"`
	Items      *jsonSchema           `json:"items"`
	Enum       []any                 `json:"enum"`
}

// TestChartSchemaPlugins: the schema allows exactly the plugins cmd/worker
// has.
func TestChartSchemaPlugins(t *testing.T) {
	var schema jsonSchema
	if err := json.Unmarshal([]byte(readText(t, chartDir+"/values.schema.json")), &schema); err != nil {
		t.Fatal(err)
	}
	items := schema.Properties["plugins"].Properties["enabled"].Items
	if items == nil {
		t.Fatal("values.schema.json: plugins.enabled has no items")
	}
	var got []string
	for _, v := range items.Enum {
		s, _ := v.(string)
		got = append(got, s)
	}
	if d := cmp.Diff(builtin.Names, got); d != "" {
		t.Errorf("plugins.enabled enum (-builtin.Names +schema):\n%s", d)
	}
}

// TestChartRefuses: each testdata/helm/*.bad.yaml stops `helm install`
// with a message that names the value and what to do. The schema refuses
// a value on its own; the templates refuse what takes two values.
func TestChartRefuses(t *testing.T) {
	cases := []struct {
		file string
		want string
	}{
		{"negative-concurrency", "at '/worker/concurrency': minimum: got -1, want 1"},
		{"unknown-plugin", "at '/plugins/enabled/1': value must be one of 'users', 'points', 'scores', 'notifications', 'sessions', 'reports', 'examples'"},
		{"password-in-values", "at '/redis': additional properties 'password' not allowed"},
		{"url-in-values", "at '/redis/url': got string, want object"},
		{"misspelt-key", "at '/worker': additional properties 'concurency' not allowed"},
		{"duration-without-unit", "at '/worker/shutdownTimeout': '25' does not match pattern"},
		{"keda-to-zero", "at '/keda/minReplicas': minimum: got 0, want 1"},
		{"pdb-blocks-drains", "at '/podDisruptionBudget/maxUnavailable': minimum: got 0, want 1"},
		{"stream-with-space", "at '/worker/streams/0': 'sw:a sw:b' does not match pattern"},
		{"no-limits", "at '/resources': missing property 'limits'"},
		{"latest-tag", "image.tag latest moves under running pods: pin a release (or image.digest)"},
		{"users-without-database", "plugins.enabled includes users, which stores users in PostgreSQL: set plugins.database.secretName"},
		{"grace-below-shutdown", "terminationGracePeriodSeconds=30 is below worker.shutdownTimeout (25s) + 10s"},
		{"cluster-and-sentinel", "redis.clusterAddrs and redis.sentinel.addrs are both set"},
		{"sentinel-without-master", "redis.sentinel.addrs is set without redis.sentinel.master"},
		{"cert-without-key", "redis.tls.cert and redis.tls.key go together"},
		{"pending-above-concurrency", "keda.pendingEntriesCount=64 is above worker.concurrency=32"},
		{"no-redis-egress", "networkPolicy: set redisPodLabels (in-cluster Redis pods) or redisCIDRs"},
		{"unknown-scripts-mode", "at '/redis/scripts': value must be one of 'eval', 'functions'"},
	}
	var inTable []string
	for _, tc := range cases {
		inTable = append(inTable, filepath.Join("testdata/helm", tc.file+".bad.yaml"))
	}
	files, err := filepath.Glob("testdata/helm/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(files, slices.Sorted(slices.Values(inTable))); d != "" {
		t.Errorf("testdata/helm files (-) without a case, cases (+) without a file:\n%s", d)
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata/helm", tc.file+".bad.yaml")
			_, err := helmTemplate(chartRelease{name: release, values: []string{readText(t, path)}})
			if err == nil {
				t.Fatalf("helm install -f %s succeeded; want it refused with %q", path, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm install -f %s:\n%v\nwant the message to contain %q", path, err, tc.want)
			}
		})
	}
}

// TestChartGracePeriod: terminationGracePeriodSeconds follows
// WORKER_SHUTDOWN_TIMEOUT, read as a Go duration, with 20s for what comes
// after the drain (shutdownMargin and more).
func TestChartGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		shutdown string
		want     int64
	}{
		{"25s", 45},
		{"0", 20},
		{"500ms", 21},
		{"1m30s", 110},
		{"1.5m", 110},
		{"1h", 3620},
		{"2m0.1s", 141},
	} {
		t.Run(tc.shutdown, func(t *testing.T) {
			m, _ := renderChart(t, chartRelease{name: release, values: []string{"worker: {shutdownTimeout: '" + tc.shutdown + "'}"}})
			got := m.Deployments["streamworker"].Spec.Template.Spec.TerminationGracePeriodSeconds
			if got == nil {
				t.Fatal("terminationGracePeriodSeconds is not set")
			}
			if *got != tc.want {
				t.Errorf("worker.shutdownTimeout %s: terminationGracePeriodSeconds %d, want %d", tc.shutdown, *got, tc.want)
			}
		})
	}
}
