package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

const testSecret = "0123456789abcdef-secret"

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []Token
		err         string
	}{
		{"Empty", "", nil, ""},
		{"Bare", "0123456789abcdef", []Token{{"token", "0123456789abcdef"}}, ""},
		{"Named", "alice:0123456789abcdef, ci-bot:abcdefghijklmnop:q", []Token{{"alice", "0123456789abcdef"}, {"ci-bot", "abcdefghijklmnop:q"}}, ""},
		{"Short", "alice:short", nil, "STREAMCTL_WEB_TOKEN: token 1 (alice): the secret has 5 bytes; at least 16 are needed"},
		{"BadName", "a b:0123456789abcdef", nil, `STREAMCTL_WEB_TOKEN: token 1: name "a b" is not allowed`},
		{"Twice", "a:0123456789abcdef,a:0123456789abcdeg", nil, `STREAMCTL_WEB_TOKEN: token name "a" is given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTokens(tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseTokens(%q) error = %v, want it to contain %q", tc.value, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseTokens(%q) (-want +got):\n%s", tc.value, diff)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tokens := []Token{{"alice", "0123456789abcdef"}, {"bob", "fedcba9876543210"}}
	for secret, want := range map[string]string{"0123456789abcdef": "alice", "fedcba9876543210": "bob", "": "", "0123456789abcde": "", "0123456789abcdef0": ""} {
		got, ok := match(tokens, secret)
		if got != want || ok != (want != "") {
			t.Errorf("match(%q) = %q, %v; want %q", secret, got, ok, want)
		}
	}
}

func TestSessions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSessions(time.Hour, 2, func() time.Time { return now })
	a, _ := s.create("alice")
	if ss, ok := s.get(a); !ok || ss.who != "alice" || ss.csrf == "" {
		t.Fatalf("get(a) = %+v, %v", ss, ok)
	}
	now = now.Add(time.Minute)
	b, _ := s.create("bob")
	now = now.Add(time.Minute)
	s.create("carol") // at most 2: the one closest to expiring (alice's) goes
	if _, ok := s.get(a); ok {
		t.Error("the oldest session survived the limit")
	}
	if _, ok := s.get(b); !ok {
		t.Error("bob's session is gone")
	}
	now = now.Add(time.Hour)
	if _, ok := s.get(b); ok {
		t.Error("an expired session is still valid")
	}
}

func TestParseFilter(t *testing.T) {
	f, err := parseFilter(url.Values{"type": {" order "}, "from": {"2030-01-02T03:04"}, "to": {"2030-01-02T05:00:00Z"}})
	if err != nil {
		t.Fatal(err)
	}
	start, end := f.bounds()
	if f.Type != "order" || start != "1893553440000-0" || end != "(1893560400000-0" {
		t.Errorf("filter = %+v, bounds %s %s", f, start, end)
	}
	for _, tc := range []struct {
		v   url.Values
		err string
	}{
		{url.Values{"from": {"yesterday"}}, `from: "yesterday" is not a time`},
		{url.Values{"from": {"2030-01-02T03:04"}, "to": {"2030-01-02T03:04"}}, "to (2030-01-02T03:04:00Z) must be after from"},
	} {
		if _, err := parseFilter(tc.v); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseFilter(%v) = %v, want %q", tc.v, err, tc.err)
		}
	}
}

func TestClip(t *testing.T) {
	if got := clip(5, "héllo wörld"); got != "héll… (13 bytes)" {
		t.Errorf("clip = %q", got)
	}
	if got := clip(50, "short"); got != "short" {
		t.Errorf("clip = %q", got)
	}
}

// fixture is a dashboard on a Redis of its own, through a real HTTP server.
type fixture struct {
	srv    *testredis.Server
	client *redis.Client
	web    *Server
	http   *httptest.Server
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newFixture(t testing.TB, tokens []Token) *fixture {
	t.Helper()
	srv := testredis.Start(t)
	c := srv.Client(t)
	logs := &syncBuffer{}
	w, err := New(Options{Client: c, Tokens: tokens, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(w)
	t.Cleanup(hs.Close)
	return &fixture{srv: srv, client: c, web: w, http: hs, logs: logs}
}

func (f *fixture) get(t testing.TB, c *http.Client, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(f.http.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (f *fixture) post(t testing.TB, c *http.Client, path string, form url.Values, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func xadd(t testing.TB, c redis.Cmdable, stream string, fields ...string) string {
	t.Helper()
	id, err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// login logs in through the form and returns a client with the session
// cookie and the CSRF token of the session.
func (f *fixture) login(t testing.TB, secret string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if code, body := f.post(t, c, "/login", url.Values{"token": {secret}}); code != http.StatusOK || !strings.Contains(body, "signed in as") {
		t.Fatalf("login: %d\n%s", code, body)
	}
	_, body, _ := f.get(t, c, "/dlq?s=x")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return c, m[1]
}

func TestPagesAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	xadd(t, f.client, "orders", "type", "order.created", "data", "{}")
	xadd(t, f.client, "orders", "type", "order.created", "data", "{}")
	if err := f.client.XGroupCreate(ctx, "orders", "workers", "0").Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, f.client, wire.PartitionStream("clicks", 0), "type", "click")
	xadd(t, f.client, wire.PartitionStream("clicks", 1), "type", "click")
	dead := xadd(t, f.client, wire.DeadLetterKey("orders"), "type", "order.created", "error", "boom", "data", "{}")
	f.client.ZAdd(ctx, wire.DelayedKey("orders"), redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: wire.EncodeEnvelope("t1", []string{"type", "order.retry", "attempt", "2"})})

	for _, tc := range []struct {
		path string
		code int
		want []string
	}{
		{"/", 200, []string{`data-stream="orders"`, `data-stream="clicks"`, "2 partitions", `class="n length">2<`, "read-only (no STREAMCTL_WEB_TOKEN)"}},
		{"/stream?s=orders", 200, []string{"workers", "order.retry", "Paused"}},
		{"/stream?s=clicks", 200, []string{"{clicks:0}", "{clicks:1}"}},
		{"/dlq?s=orders", 200, []string{dead, "boom"}},
		{"/dlq?s=orders&type=nomatch", 200, []string{"No dead letters match"}},
		{"/dlq/entry?s=orders&id=" + dead, 200, []string{"boom", "order.created"}},
		{"/dlq/entry?s=orders&id=1-1", 404, []string{"1-1 is not in orders:dlq"}},
		{"/dlq/entry?s=orders&id=nope", 400, []string{"not a stream entry ID"}},
		{"/dlq?s=orders&from=soon", 400, []string{`from: &#34;soon&#34; is not a time`}},
		{"/stream?s=nope", 404, []string{"no such stream"}},
		{"/stream", 400, []string{"name a stream"}},
		{"/static/style.css", 200, []string{"svg.spark"}},
	} {
		code, body, h := f.get(t, http.DefaultClient, tc.path)
		if code != tc.code {
			t.Errorf("GET %s = %d, want %d\n%s", tc.path, code, tc.code, body)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in\n%s", tc.path, w, body)
			}
		}
		for k, v := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Cache-Control":          "no-store",
		} {
			if h.Get(k) != v {
				t.Errorf("GET %s: %s = %q, want %q", tc.path, k, h.Get(k), v)
			}
		}
		csp := h.Get("Content-Security-Policy")
		for _, w := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
			if !strings.Contains(csp, w) || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("GET %s: CSP %q lacks %q or allows unsafe-inline", tc.path, csp, w)
			}
		}
	}
	// GET never mutates: a GET of the action is not even routed.
	if code, _, _ := f.get(t, http.DefaultClient, "/dlq/action?s=orders&do=purge-matching&confirm=yes"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /dlq/action = %d, want 405", code)
	}
	if n := f.client.XLen(ctx, wire.DeadLetterKey("orders")).Val(); n != 1 {
		t.Errorf("dead letters = %d after GETs, want 1", n)
	}
}

func TestReadOnlyRefusesChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	id := xadd(t, f.client, wire.DeadLetterKey("orders"), "type", "t", "error", "e")
	for _, h := range [][]string{nil, {"Authorization", "Bearer " + testSecret}} {
		code, body := f.post(t, http.DefaultClient, "/dlq/action", url.Values{"s": {"orders"}, "do": {"purge-selected"}, "id": {id}, "confirm": {"yes"}}, h...)
		if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("POST with %v = %d, want 403 read-only\n%s", h, code, body)
		}
	}
	if code, _ := f.post(t, http.DefaultClient, "/login", url.Values{"token": {testSecret}}); code != http.StatusForbidden {
		t.Errorf("login on a read-only dashboard = %d, want 403", code)
	}
	if n := f.client.XLen(context.Background(), wire.DeadLetterKey("orders")).Val(); n != 1 {
		t.Errorf("dead letters = %d, want 1", n)
	}
}

func TestChangesNeedTokenAndCSRF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []Token{{"alice", testSecret}})
	ctx := context.Background()
	dlq := wire.DeadLetterKey("orders")
	id := xadd(t, f.client, dlq, "type", "t", "error", "e")
	purge := url.Values{"s": {"orders"}, "do": {"purge-selected"}, "id": {id}, "confirm": {"yes"}}
	jarred, csrf := f.login(t, testSecret)

	withCSRF := func(v url.Values, csrf string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		out.Set("csrf", csrf)
		return out
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		form   url.Values
		header []string
		reason string
	}{
		{"NoToken", http.DefaultClient, purge, nil, "log in first"},
		{"NoTokenWithCSRF", http.DefaultClient, withCSRF(purge, csrf), nil, "log in first"},
		{"CookieWithoutCSRF", jarred, purge, nil, "CSRF"},
		{"CookieWrongCSRF", jarred, withCSRF(purge, "x"+csrf), nil, "CSRF"},
		{"WrongBearer", http.DefaultClient, purge, []string{"Authorization", "Bearer wrong-secret-0123456789"}, "invalid token"},
		{"NotBearer", http.DefaultClient, purge, []string{"Authorization", "Basic " + testSecret}, "Bearer"},
		{"CrossOrigin", jarred, withCSRF(purge, csrf), []string{"Origin", "https://evil.example"}, "cross-origin"},
		{"NullOrigin", jarred, withCSRF(purge, csrf), []string{"Origin", "null"}, "cross-origin"},
		{"CrossOriginBearer", http.DefaultClient, purge, []string{"Authorization", "Bearer " + testSecret, "Origin", "https://evil.example"}, "cross-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.post(t, tc.client, "/dlq/action", tc.form, tc.header...)
			if code != http.StatusForbidden || !strings.Contains(body, tc.reason) {
				t.Errorf("POST = %d, want 403 with %q\n%s", code, tc.reason, body)
			}
		})
	}
	if n := f.client.XLen(ctx, dlq).Val(); n != 1 {
		t.Fatalf("dead letters = %d after refused requests, want 1", n)
	}
	if code, body := f.post(t, http.DefaultClient, "/login", url.Values{"token": {"wrong-secret-0123456789"}}); code != http.StatusForbidden || !strings.Contains(body, "not valid") {
		t.Errorf("login with a wrong token = %d\n%s", code, body)
	}

	// With the cookie and the CSRF token: the first POST asks, the second does.
	ask := withCSRF(purge, csrf)
	ask.Del("confirm")
	if code, body := f.post(t, jarred, "/dlq/action", ask); code != 200 || !strings.Contains(body, `data-count="1"`) {
		t.Fatalf("POST without confirm = %d\n%s", code, body)
	}
	if n := f.client.XLen(ctx, dlq).Val(); n != 1 {
		t.Fatalf("dead letters = %d after the confirmation page, want 1", n)
	}
	if code, body := f.post(t, jarred, "/dlq/action", withCSRF(purge, csrf)); code != 200 || !strings.Contains(body, "Purged 1 of 1") {
		t.Fatalf("POST with confirm = %d\n%s", code, body)
	}
	if n := f.client.XLen(ctx, dlq).Val(); n != 0 {
		t.Fatalf("dead letters = %d after purge, want 0", n)
	}
	// A script with the bearer header: no cookie, no CSRF token.
	xadd(t, f.client, dlq, "type", "t", "error", "e")
	if code, body := f.post(t, http.DefaultClient, "/dlq/action", url.Values{"s": {"orders"}, "do": {"replay-matching"}, "confirm": {"yes"}}, "Authorization", "Bearer "+testSecret); code != 200 || !strings.Contains(body, "Replayed 1 of 1") {
		t.Fatalf("bearer replay = %d\n%s", code, body)
	}
	logs := f.logs.String()
	for _, w := range []string{`msg="dashboard change"`, "who=alice", "action=purge", "asked=1", "done=1", "action=replay", "scope=matching"} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs lack %q:\n%s", w, logs)
		}
	}
	if strings.Contains(logs, testSecret) {
		t.Errorf("logs contain the secret:\n%s", logs)
	}
	// Logging out ends the session.
	if code, _ := f.post(t, jarred, "/logout", url.Values{"csrf": {csrf}}); code != 200 {
		t.Fatalf("logout = %d", code)
	}
	if code, _ := f.post(t, jarred, "/dlq/action", withCSRF(purge, csrf)); code != http.StatusForbidden {
		t.Errorf("POST after logout = %d, want 403", code)
	}
}

func TestSearchAndReplayMatching(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []Token{{"alice", testSecret}})
	ctx := context.Background()
	dlq := wire.DeadLetterKey("orders")
	var pay []string
	for i := range 120 {
		typ := "order.paid"
		if i%2 == 1 {
			typ = "order.created"
		}
		id := xadd(t, f.client, dlq, "type", typ, "error", "card declined", "data", "{}")
		if typ == "order.paid" {
			pay = append(pay, id)
		}
	}
	// Paged search: 60 matches, 50 on the first page.
	_, body, _ := f.get(t, http.DefaultClient, "/dlq?s=orders&type=PAID")
	if n := strings.Count(body, "<td class=\"type\">order.paid</td>"); n != pageLimit || strings.Contains(body, "order.created</td>") {
		t.Fatalf("first page has %d order.paid rows, want %d and no others", n, pageLimit)
	}
	next := regexp.MustCompile(`href="(/dlq\?[^"]+)" id="next"`).FindStringSubmatch(body)
	if next == nil {
		t.Fatalf("no next link:\n%s", body)
	}
	_, body, _ = f.get(t, http.DefaultClient, strings.ReplaceAll(next[1], "&amp;", "&"))
	if n := strings.Count(body, "<td class=\"type\">order.paid</td>"); n != 10 || !strings.Contains(body, pay[59]) {
		t.Fatalf("second page has %d rows, want 10 ending with %s", n, pay[59])
	}
	// Replay every match: asked with the count; a match dead-lettered after
	// the count was shown stays.
	form := url.Values{"s": {"orders"}, "do": {"replay-matching"}, "type": {"paid"}}
	bearer := []string{"Authorization", "Bearer " + testSecret}
	code, body := f.post(t, http.DefaultClient, "/dlq/action", form, bearer...)
	if code != 200 || !strings.Contains(body, `data-count="60"`) {
		t.Fatalf("confirmation = %d\n%s", code, body)
	}
	upto := regexp.MustCompile(`name="upto" value="([^"]+)"`).FindStringSubmatch(body)
	late := xadd(t, f.client, dlq, "type", "order.paid", "error", "late")
	form.Set("confirm", "yes")
	form.Set("upto", upto[1])
	if code, body := f.post(t, http.DefaultClient, "/dlq/action", form, bearer...); code != 200 || !strings.Contains(body, "Replayed 60 of 60") {
		t.Fatalf("replay = %d\n%s", code, body)
	}
	left, err := f.client.XRange(ctx, dlq, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 61 || left[len(left)-1].ID != late {
		t.Fatalf("%d dead letters left (want 60 order.created and the late one)", len(left))
	}
	if n := f.client.XLen(ctx, "orders").Val(); n != 60 {
		t.Fatalf("orders has %d entries, want the 60 replayed", n)
	}
}

func TestSparkline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	f.web.sampler.now = func() time.Time { return now }
	xadd(t, f.client, wire.PartitionStream("clicks", 0), "type", "click")
	xadd(t, f.client, wire.PartitionStream("clicks", 1), "type", "click")
	for i := range 4 {
		for range i * 10 {
			xadd(t, f.client, wire.PartitionStream("clicks", i%2), "type", "click")
		}
		xadd(t, f.client, "orders", "type", "t")
		if err := f.web.sampler.runOnce(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second)
	}
	if diff := cmp.Diff([]float64{0.1, 0.1, 0.1}, f.web.sampler.rates("orders")); diff != "" {
		t.Errorf("rates of orders (-want +got):\n%s", diff)
	}
	// Partitions fold: {clicks:1} got 10, then {clicks:0} 20, then {clicks:1} 30.
	rows, err := f.web.overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Name != "clicks" || rows[0].Partitions != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	if diff := cmp.Diff([]float64{1, 2, 3}, rows[0].Rates); diff != "" {
		t.Errorf("rates of clicks (-want +got):\n%s", diff)
	}
	if svg := string(sparkline(rows[0].Rates)); !strings.HasPrefix(svg, `<svg class="spark"`) || strings.Contains(svg, "style") {
		t.Errorf("sparkline = %s", svg)
	}
}

func TestEvictionWarningOwnersAndTimeRange(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t, "--maxmemory-policy", "allkeys-lru")
	c := srv.Client(t)
	ctx := context.Background()
	w, err := New(Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	get := func(target string) string {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d\n%s", target, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	p := wire.PartitionStream("clicks", 0)
	if err := c.XGroupCreateMkStream(ctx, p, "workers", "0").Err(); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, wire.PartitionOwnerKey(p, "workers"), "pod-7", 0)
	id := xadd(t, c, wire.DeadLetterKey("orders"), "type", "t", "error", "e")
	if body := get("/"); !strings.Contains(body, "maxmemory-policy is allkeys-lru") {
		t.Errorf("no eviction warning:\n%s", body)
	}
	for _, target := range []string{"/stream?s=clicks", "/stream?s=" + url.QueryEscape(p)} {
		if body := get(target); !strings.Contains(body, "pod-7") {
			t.Errorf("GET %s: no owner pod-7:\n%s", target, body)
		}
	}
	ms, _, _ := strings.Cut(id, "-")
	at, _ := strconv.ParseInt(ms, 10, 64)
	minute := time.UnixMilli(at).UTC().Truncate(time.Minute)
	for q, want := range map[string]bool{
		"from=" + minute.Format("2006-01-02T15:04"):                   true,
		"to=" + minute.Format("2006-01-02T15:04"):                     false,
		"from=" + minute.Add(time.Minute).Format("2006-01-02T15:04"):  false,
		"to=" + minute.Add(time.Minute).Format(time.RFC3339):          true,
		"error=E&type=T&from=" + minute.Format("2006-01-02T15:04:05"): true,
	} {
		if got := strings.Contains(get("/dlq?s=orders&"+q), id); got != want {
			t.Errorf("/dlq?%s lists %s: %v, want %v", q, id, got, want)
		}
	}
}
