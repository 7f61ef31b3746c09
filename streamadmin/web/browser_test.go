package web

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the screenshots of TestBrowser to docs/img as well")

// browser starts Debian's chromium, headless, with the flags this project's
// machines need (a closed network: no background connections), and returns
// a context for new tabs; it stops when the test ends. Without chromium the
// test fails on CI (CI=true) and is skipped elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not on PATH; scripts/test-deps.sh installs it (apt-get install chromium)")
		}
		t.Skip("chromium is not on PATH (apt-get install chromium); the browser tests need it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, so that a failure to start is named as such.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// tab opens a tab of the browser for one subtest, bounded in time, that
// fails the test on any JavaScript dialog.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*cdppage.EventJavascriptDialogOpening); ok {
			t.Errorf("a JavaScript dialog opened: %s %q", d.Type, d.Message)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// screenshot saves the page as name.png among the test's artifacts
// ($TEST_ARTIFACTS, or a temporary directory), and in docs/img with
// -update-screenshots.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{artifacts(t)}
	if *updateScreenshots {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "img"))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "web-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

var (
	artifactsOnce sync.Once
	artifactsDir  string
)

func artifacts(t *testing.T) string {
	artifactsOnce.Do(func() {
		if d := os.Getenv("TEST_ARTIFACTS"); d != "" {
			artifactsDir = filepath.Join(d, "web")
			return
		}
		artifactsDir, _ = os.MkdirTemp("", "streamctl-web-screenshots-")
	})
	return artifactsDir
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser drives the dashboard in a real browser against a real Redis
// with streams a running worker consumes: the overview's numbers, the
// periodic events of a stream, a dead letter opened and replayed by clicking
// and then processed by the worker, a stream paused and resumed by clicking,
// hostile fields rendered inert, and changes refused without the tokens.
func TestBrowser(t *testing.T) {
	bctx := browser(t)
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()

	// A worker consumes orders; order.paid fails for good until fixed.
	var fixed atomic.Bool
	processed := make(chan string, 10)
	mux := worker.NewMux()
	mux.HandleFunc("order.created", func(context.Context, *worker.Message) error { return nil })
	mux.HandleFunc("order.paid", func(_ context.Context, m *worker.Message) error {
		if !fixed.Load() {
			return worker.Permanent(errors.New("card declined: issuer unavailable"))
		}
		processed <- m.OriginID
		return nil
	})
	cfg := config.Default()
	cfg.RedisURL, cfg.Streams, cfg.Group, cfg.Consumer = srv.URL(), []string{"orders"}, "workers", "pod-0"
	cfg.Block, cfg.PromoteInterval, cfg.HTTPAddr = 50*time.Millisecond, 10*time.Millisecond, "off"
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, cfg, mux, worker.WithRedis(c),
			worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
	}()
	t.Cleanup(func() {
		stopWorker()
		if err := <-done; err != nil {
			t.Errorf("worker.Run = %v", err)
		}
	})

	for range 5 {
		xadd(t, c, "orders", "type", "order.created", "data", `{"order":42}`)
	}
	paid := xadd(t, c, "orders", "type", "order.paid", "data", `{"order":43,"amount":1999}`, "id", "pay-43")
	dlq := wire.DeadLetterKey("orders")
	var dead string
	waitFor(t, "the worker dead-letters order.paid", func() bool {
		msgs, _ := c.XRange(ctx, dlq, "-", "+").Result()
		if len(msgs) == 1 {
			dead = msgs[0].ID
		}
		return dead != ""
	})
	waitFor(t, "the worker acknowledges every entry", func() bool {
		p, err := c.XPending(ctx, "orders", "workers").Result()
		return err == nil && p.Count == 0
	})
	// Other streams: one no one reads, a partitioned one, a delayed retry.
	for range 7 {
		xadd(t, c, "emails", "type", "email.send", "data", "{}")
	}
	for i := range 4 {
		xadd(t, c, wire.PartitionStream("clicks", i), "type", "click")
	}
	c.ZAdd(ctx, wire.DelayedKey("emails"), redis.Z{Score: float64(time.Now().Add(90 * time.Second).UnixMilli()),
		Member: wire.EncodeEnvelope("tok", []string{"type", "email.send", "attempt", "2", "data", "{}"})})
	// A dead letter whose fields are hostile: they point at a server that
	// counts every request it gets.
	var hits atomic.Int64
	bait := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(bait.Close)
	hostile := xadd(t, c, wire.DeadLetterKey("emails"),
		"type", `<script>window.pwned=1;alert(1)</script>`,
		"error", `<img src="`+bait.URL+`/img" onerror="window.pwned=2;alert(2)">`,
		"data", `"><svg onload="window.pwned=3;alert(3)"><script src="`+bait.URL+`/js"></script>`,
		`<b onmouseover=alert(4)>`, `</pre><iframe src="`+bait.URL+`/frame"></iframe>`)

	// Periodic events registered for orders, as a worker with
	// WORKER_SCHEDULE registers them: the entry, and its last tick.
	lastTick := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	if err := c.HSet(ctx, wire.ScheduleKey("orders"),
		wire.ScheduleEntryField("report.requested 0 3 * * *"), `{"type":"report.requested","spec":"0 3 * * *","tz":"Europe/Berlin","missed":"latest"}`,
		wire.ScheduleEntryField("cleanup.run @every 5m"), `{"type":"cleanup.run","spec":"@every 5m","tz":"UTC","missed":"skip"}`,
		wire.ScheduleTickField("cleanup.run @every 5m"), strconv.FormatInt(lastTick.UnixMilli(), 10),
	).Err(); err != nil {
		t.Fatal(err)
	}

	w, err := New(Options{Client: c, Tokens: []Token{{"alice", testSecret}}, Logger: slog.New(slog.DiscardHandler), Refresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Rate samples for the sparklines: entries added between samples.
	now := time.Now()
	w.sampler.now = func() time.Time { return now }
	for i := range 12 {
		for range (i%5 + 1) * 3 {
			xadd(t, c, wire.PartitionStream("clicks", i%4), "type", "click")
		}
		if err := w.sampler.runOnce(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second)
	}
	var paths sync.Map // every path the browser asked for
	hs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		paths.Store(r.Method+" "+r.URL.Path, true)
		w.ServeHTTP(rw, r)
	}))
	t.Cleanup(hs.Close)
	base := hs.URL

	t.Run("Overview", func(t *testing.T) {
		tc := tab(t, bctx)
		do(t, tc, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#streams")))
		want := map[string]string{
			`tr[data-stream="emails"] td.length`:    "7",
			`tr[data-stream="emails"] td.delayed`:   "1",
			`tr[data-stream="emails"] td.dead`:      "1",
			`tr[data-stream="orders"] td.length`:    "6",
			`tr[data-stream="orders"] td.dead`:      "1",
			`tr[data-stream="orders"] td.pending`:   "0",
			`tr[data-stream="orders"] td.consumers`: "1",
		}
		clicks := int64(0)
		for i := range 4 {
			clicks += c.XLen(ctx, wire.PartitionStream("clicks", i)).Val()
		}
		want[`tr[data-stream="clicks"] td.length`] = itoa(clicks)
		for sel, v := range want {
			if got := text(t, tc, sel); got != v {
				t.Errorf("%s = %q, want %q", sel, got, v)
			}
		}
		if got := text(t, tc, `tr[data-stream="clicks"] td:first-child`); !strings.Contains(got, "4 partitions") {
			t.Errorf("clicks row = %q, want its 4 partitions folded", got)
		}
		if n, err := chromedp.Run(tc, chromedp.Evaluate[int](`document.querySelectorAll('tr[data-stream="clicks"] svg.spark polyline').length`)); err != nil || n != 1 {
			t.Errorf("sparkline of clicks: %d, %v", n, err)
		}
		screenshot(t, tc, "overview")
		// The page reloads its numbers by itself (static/app.js, under the CSP).
		xadd(t, c, "emails", "type", "email.send", "data", "{}")
		do(t, tc, chromedp.WaitVisible(chromedp.CSS(`tr[data-stream="emails"] td.length`)))
		waitFor(t, "the overview shows the new length of emails", func() bool {
			got, err := chromedp.Run(tc, chromedp.Evaluate[string](`document.querySelector('tr[data-stream="emails"] td.length').textContent`))
			return err == nil && got == "8"
		})
		do(t, tc, chromedp.Navigate(base+"/stream?s=orders"), chromedp.WaitVisible(chromedp.CSS("#groups")))
		if got := text(t, tc, "#consumers"); !strings.Contains(got, "pod-0") || !regexp.MustCompile(`\d+m?s ago`).MatchString(got) {
			t.Errorf("consumers = %q, want pod-0 with its heartbeat", got)
		}
		got := text(t, tc, "#schedule")
		for _, w := range []string{"report.requested", "0 3 * * *", "Europe/Berlin", "latest", "cleanup.run", "@every 5m", "skip", lastTick.UTC().Format("2006-01-02 15:04:05Z"), "none yet"} {
			if !strings.Contains(got, w) {
				t.Errorf("periodic events = %q, want %q in it", got, w)
			}
		}
		if got := text(t, tc, "#pause-state"); got != "Not paused." {
			t.Errorf("pause state = %q, want Not paused.", got)
		}
		screenshot(t, tc, "stream")
		do(t, tc, chromedp.Navigate(base+"/stream?s=emails"), chromedp.WaitVisible(chromedp.CSS("#delayed")))
		if got := text(t, tc, "#delayed"); !strings.Contains(got, "email.send") || !strings.Contains(got, "in 1m") {
			t.Errorf("delayed = %q, want email.send due in 1m…", got)
		}
	})

	t.Run("ReplayByClicking", func(t *testing.T) {
		tc := tab(t, bctx)
		do(t, tc,
			chromedp.Navigate(base+"/login"),
			chromedp.SendKeys(chromedp.CSS(`input[name=token]`), testSecret),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.CSS("#streams")),
		)
		if got := text(t, tc, "header .who"); !strings.Contains(got, "signed in as alice") {
			t.Fatalf("header = %q after logging in", got)
		}
		do(t, tc, chromedp.Navigate(base+"/dlq?s=orders"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		screenshot(t, tc, "dlq")
		do(t, tc, chromedp.Click(chromedp.CSS(`a[href*="`+dead+`"]`)), chromedp.WaitVisible(chromedp.CSS("#fields")))
		if got := text(t, tc, "#fields"); !strings.Contains(got, "card declined: issuer unavailable") || !strings.Contains(got, `{"order":43,"amount":1999}`) || !strings.Contains(got, paid) {
			t.Errorf("fields = %q, want the error, the data and the origin ID", got)
		}
		screenshot(t, tc, "entry")
		fixed.Store(true)
		do(t, tc, chromedp.Navigate(base+"/dlq?s=orders"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")),
			chromedp.Click(chromedp.CSS(`input[name=id][value="`+dead+`"]`)),
			chromedp.Click(chromedp.ID("replay-selected")),
			chromedp.WaitVisible(chromedp.ID("confirm-count")),
		)
		if got := text(t, tc, "h1"); got != "Replay 1 dead letter?" {
			t.Errorf("confirmation = %q", got)
		}
		screenshot(t, tc, "confirm")
		do(t, tc, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("result")))
		if got := text(t, tc, "#result"); got != "Replayed 1 of 1" {
			t.Errorf("result = %q", got)
		}
		select {
		case origin := <-processed:
			if origin != paid {
				t.Errorf("the worker processed origin %s, want %s", origin, paid)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the worker did not process the replayed entry within 30s")
		}
		// A request from the page with the session cookie but without the
		// CSRF token is refused, and changes nothing.
		status, err := chromedp.Run(tc, chromedp.Evaluate[int](`fetch('/dlq/action', {method: 'POST', body: new URLSearchParams({s: 'emails', do: 'purge-matching', confirm: 'yes'})}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		if err != nil || status != http.StatusForbidden {
			t.Errorf("POST without the CSRF token from the page = %d, %v; want 403", status, err)
		}
	})

	t.Run("PauseByClicking", func(t *testing.T) {
		fixed.Store(true) // order.paid succeeds: it says when the worker handled one
		tc := tab(t, bctx)
		do(t, tc,
			chromedp.Navigate(base+"/login"),
			chromedp.SendKeys(chromedp.CSS(`input[name=token]`), testSecret),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.CSS("#streams")),
			chromedp.Navigate(base+"/stream?s=orders"),
			chromedp.WaitVisible(chromedp.ID("pause-form")),
		)
		paused := func() map[string]string { return c.HGetAll(ctx, wire.PausedKey("orders")).Val() }
		// Every group: the select's first choice.
		do(t, tc, chromedp.Click(chromedp.ID("pause")), chromedp.WaitVisible(chromedp.CSS(`#pauses tr[data-group="*"]`)))
		if p := paused(); len(p) != 1 || p[wire.PauseAllGroups] == "" {
			t.Errorf("orders:paused = %v after Pause, want every group (*)", p)
		}
		if got := text(t, tc, "#paused"); got != "every group" {
			t.Errorf("summary paused = %q, want every group", got)
		}
		if got := text(t, tc, "#groups"); !strings.Contains(got, "workers paused") {
			t.Errorf("groups = %q, want workers marked paused", got)
		}
		screenshot(t, tc, "paused")
		do(t, tc, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#streams")))
		if got := text(t, tc, `tr[data-stream="orders"] td.paused`); got != "all groups" {
			t.Errorf("overview paused of orders = %q, want all groups", got)
		}
		if got := text(t, tc, `tr[data-stream="emails"] td.paused`); got != "no" {
			t.Errorf("overview paused of emails = %q, want no", got)
		}
		// An entry added while paused is handled once resumed.
		more := xadd(t, c, "orders", "type", "order.paid", "data", `{"order":44}`)
		do(t, tc, chromedp.Navigate(base+"/stream?s=orders"), chromedp.WaitVisible(chromedp.CSS(`#pauses tr[data-group="*"]`)),
			chromedp.Click(chromedp.CSS(`#pauses tr[data-group="*"] button.resume-one`)),
			chromedp.WaitVisible(chromedp.CSS(`#pause-state p`)))
		if p := paused(); len(p) != 0 {
			t.Errorf("orders:paused = %v after Resume, want nothing", p)
		}
		if got := text(t, tc, "#pause-state"); got != "Not paused." {
			t.Errorf("pause state = %q after Resume, want Not paused.", got)
		}
		select {
		case origin := <-processed:
			if origin != more {
				t.Errorf("the worker processed %s, want %s", origin, more)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the worker did not process the entry added while paused within 30s of the resume")
		}
		// One group: chosen in the select; Resume with the select on every
		// group then ends every pause.
		do(t, tc, chromedp.SetValue(chromedp.ID("pause-group"), "workers"), chromedp.Click(chromedp.ID("pause")),
			chromedp.WaitVisible(chromedp.CSS(`#pauses tr[data-group="workers"]`)))
		if p := paused(); len(p) != 1 || p["workers"] == "" {
			t.Errorf("orders:paused = %v after pausing workers, want workers", p)
		}
		do(t, tc, chromedp.Click(chromedp.ID("resume")), chromedp.WaitVisible(chromedp.CSS(`#pause-state p`)))
		if p := paused(); len(p) != 0 {
			t.Errorf("orders:paused = %v after Resume of every group, want nothing", p)
		}
	})

	t.Run("HostileFieldsInert", func(t *testing.T) {
		tc := tab(t, bctx)
		do(t, tc, chromedp.Navigate(base+"/dlq?s=emails"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		if got := text(t, tc, "#dead-letters td.type"); got != `<script>window.pwned=1;alert(1)</script>` {
			t.Errorf("type shown as %q, want the text itself", got)
		}
		do(t, tc, chromedp.Navigate(base+"/dlq/entry?s=emails&id="+hostile), chromedp.WaitVisible(chromedp.CSS("#fields")))
		got := text(t, tc, "#fields")
		for _, w := range []string{`<img src="` + bait.URL, `<svg onload=`, `<b onmouseover=alert(4)>`, `<iframe src=`} {
			if !strings.Contains(got, w) {
				t.Errorf("fields lack the text %q:\n%s", w, got)
			}
		}
		screenshot(t, tc, "hostile")
		inert, err := chromedp.Run(tc, chromedp.Evaluate[bool](`window.pwned === undefined && document.querySelectorAll('main img, main script, main iframe, main svg, main b').length === 0`))
		if err != nil || !inert {
			t.Errorf("the hostile fields are live in the page (%v)", err)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the page made %d requests to the address in the fields", n)
		}
	})

	t.Run("RefusedWithoutTokens", func(t *testing.T) {
		status := func(req *http.Request) int {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/dlq/action", strings.NewReader("s=emails&do=purge-matching&confirm=yes"))
		if got := status(req); got != http.StatusForbidden {
			t.Errorf("POST without a token = %d, want 403", got)
		}
		if n := c.XLen(ctx, wire.DeadLetterKey("emails")).Val(); n != 1 {
			t.Errorf("emails has %d dead letters after refused requests, want 1", n)
		}
	})

	paths.Range(func(k, _ any) bool {
		p := k.(string)
		if !strings.HasPrefix(p, "GET /") && p != "POST /login" && p != "POST /dlq/action" && p != "POST /stream/pause" {
			t.Errorf("the browser sent %s", p)
		}
		return true
	})
}

// waitFor polls cond until it holds, or fails the test after 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling Redis with a deadline
	}
}

func itoa(n int64) string { return funcs["num"].(func(int64) string)(n) }
