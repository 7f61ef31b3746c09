package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// pausedFields returns the fields of stream's pause hash.
func pausedFields(t *testing.T, f *fixture, stream string) []string {
	t.Helper()
	m, err := f.client.HGetAll(context.Background(), wire.PausedKey(stream)).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPauseReadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	xadd(t, f.client, "orders", "type", "t")
	if err := f.client.HSet(context.Background(), wire.PausedKey("orders"), "workers", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]string{nil, {"Authorization", "Bearer " + testSecret}} {
		code, body := f.post(t, http.DefaultClient, "/stream/pause", url.Values{"s": {"orders"}, "action": {"resume"}}, h...)
		if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("POST /stream/pause with %v = %d, want 403 read-only\n%s", h, code, body)
		}
	}
	if got := pausedFields(t, f, "orders"); len(got) != 1 {
		t.Errorf("pauses after refused resumes: %v, want [workers]", got)
	}
	// The state shows; the controls do not.
	_, body, _ := f.get(t, http.DefaultClient, "/stream?s=orders")
	if !strings.Contains(body, `data-group="workers"`) || strings.Contains(body, `id="pause-form"`) || strings.Contains(body, "resume-one") {
		t.Errorf("read-only stream page: want the pause of workers and no controls\n%s", body)
	}
	if _, body, _ := f.get(t, http.DefaultClient, "/"); !strings.Contains(body, `<span class="tag warn">workers</span>`) {
		t.Errorf("overview: want workers paused\n%s", body)
	}
}

func TestPauseNeedsTokenAndCSRF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []Token{{"alice", testSecret}})
	xadd(t, f.client, "orders", "type", "t")
	jarred, csrf := f.login(t, testSecret)
	pause := url.Values{"s": {"orders"}, "action": {"pause"}}
	with := func(csrf string) url.Values {
		v := url.Values{"csrf": {csrf}}
		for k, vs := range pause {
			v[k] = vs
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		form   url.Values
		header []string
		reason string
	}{
		{"NoToken", http.DefaultClient, pause, nil, "log in first"},
		{"NoTokenWithCSRF", http.DefaultClient, with(csrf), nil, "log in first"},
		{"CookieWithoutCSRF", jarred, pause, nil, "CSRF"},
		{"CookieWrongCSRF", jarred, with("x" + csrf), nil, "CSRF"},
		{"WrongBearer", http.DefaultClient, pause, []string{"Authorization", "Bearer wrong-secret-0123456789"}, "invalid token"},
		{"CrossOrigin", jarred, with(csrf), []string{"Origin", "https://evil.example"}, "cross-origin"},
		{"CrossOriginBearer", http.DefaultClient, pause, []string{"Authorization", "Bearer " + testSecret, "Origin", "https://evil.example"}, "cross-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.post(t, tc.client, "/stream/pause", tc.form, tc.header...)
			if code != http.StatusForbidden || !strings.Contains(body, tc.reason) {
				t.Errorf("POST = %d, want 403 with %q\n%s", code, tc.reason, body)
			}
		})
	}
	if got := pausedFields(t, f, "orders"); len(got) != 0 {
		t.Fatalf("pauses after refused requests: %v, want none", got)
	}
	if strings.Contains(f.logs.String(), "dashboard change") {
		t.Fatalf("a refused request logged a change:\n%s", f.logs)
	}
}

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []Token{{"alice", testSecret}})
	ctx := context.Background()
	xadd(t, f.client, "orders", "type", "t")
	for _, g := range []string{"billing", "workers"} {
		if err := f.client.XGroupCreate(ctx, "orders", g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	xadd(t, f.client, wire.PartitionStream("clicks", 0), "type", "click")
	xadd(t, f.client, wire.PartitionStream("clicks", 1), "type", "click")
	jarred, csrf := f.login(t, testSecret)
	if _, body, _ := f.get(t, jarred, "/stream?s=orders"); !strings.Contains(body, `id="pause-form"`) || !strings.Contains(body, `<option value="workers">`) {
		t.Fatalf("stream page, logged in: want the pause form with the groups\n%s", body)
	}
	changes := 0
	for _, step := range []struct {
		action, group string
		want          string // the fields of orders:paused after the step, sorted, joined by ","
		page, row     string // in the stream page after the step, and the overview row's Paused
	}{
		{"pause", "workers", "workers", `data-group="workers"`, "workers"},
		{"pause", "workers", "workers", `data-group="workers"`, "workers"}, // already: the time is kept
		{"pause", "", "*,workers", `<b id="paused">every group</b>`, "all groups"},
		{"resume", "workers", "*", `<b id="paused">every group</b>`, "all groups"},
		{"pause", "billing", "*,billing", `data-group="billing"`, "all groups"},
		{"resume", "", "", "Not paused", ""},
	} {
		form := url.Values{"csrf": {csrf}, "s": {"orders"}, "action": {step.action}, "group": {step.group}}
		code, body := f.post(t, jarred, "/stream/pause", form) // 303, followed: the stream page
		if code != http.StatusOK || !strings.Contains(body, step.page) {
			t.Fatalf("%s %q = %d, want the stream page with %q\n%s", step.action, step.group, code, step.page, body)
		}
		changes++
		got := pausedFields(t, f, "orders")
		slices.Sort(got)
		if strings.Join(got, ",") != step.want {
			t.Errorf("%s %q: orders:paused holds %v, want %s", step.action, step.group, got, step.want)
		}
		_, over, _ := f.get(t, http.DefaultClient, "/")
		row := over[strings.Index(over, `data-stream="orders"`):]
		row = row[:strings.Index(row, "</tr>")]
		if step.row == "" && !strings.Contains(row, `<span class="muted">no</span>`) || step.row != "" && !strings.Contains(row, `<span class="tag warn">`+step.row+`</span>`) {
			t.Errorf("%s %q: overview row %s, want paused %q", step.action, step.group, row, step.row)
		}
	}
	// A partitioned stream is paused by its logical name, for every partition.
	if code, body := f.post(t, http.DefaultClient, "/stream/pause", url.Values{"s": {"clicks"}, "action": {"pause"}}, "Authorization", "Bearer "+testSecret); code != http.StatusOK || !strings.Contains(body, `<tr data-group="*">`) {
		t.Fatalf("bearer pause of clicks = %d, want the page of clicks, paused\n%s", code, body)
	}
	changes++
	if got := pausedFields(t, f, "clicks"); len(got) != 1 || got[0] != wire.PauseAllGroups {
		t.Errorf("clicks:paused holds %v, want [*]", got)
	}
	if _, body, _ := f.get(t, jarred, "/stream?s="+url.QueryEscape(wire.PartitionStream("clicks", 1))); !strings.Contains(body, `<input type="hidden" name="s" value="clicks">`) || !strings.Contains(body, "every group") {
		t.Errorf("partition page: want the pause of clicks and controls that change it\n%s", body)
	}
	if _, over, _ := f.get(t, http.DefaultClient, "/"); !strings.Contains(over[strings.Index(over, `data-stream="clicks"`):], `<span class="tag warn">all groups</span>`) {
		t.Errorf("overview: want clicks paused for all groups\n%s", over)
	}
	// Bad input: 400, nothing changed, nothing logged.
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"s": {"orders"}, "action": {"stop"}}, `action: &#34;stop&#34; is not allowed (pause or resume)`},
		{url.Values{"action": {"pause"}}, "s: name the stream"},
		{url.Values{"s": {wire.PartitionStream("clicks", 0)}, "action": {"pause"}}, "is a partition"},
		{url.Values{"s": {"orders"}, "action": {"pause"}, "group": {strings.Repeat("g", maxGroup+1)}}, "group: 257 bytes; at most 256"},
	} {
		tc.form.Set("csrf", csrf)
		if code, body := f.post(t, jarred, "/stream/pause", tc.form); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("POST %v = %d, want 400 with %q\n%s", tc.form, code, tc.want, body)
		}
	}
	if got := pausedFields(t, f, "orders"); len(got) != 0 {
		t.Errorf("orders:paused holds %v after bad requests, want nothing", got)
	}
	logs := f.logs.String()
	if n := strings.Count(logs, `msg="dashboard change"`); n != changes {
		t.Errorf("%d change lines for %d changes:\n%s", n, changes, logs)
	}
	for _, w := range []string{"who=alice action=pause stream=orders group=workers changed=true", "action=pause stream=orders group=workers changed=false", "action=resume stream=orders group=all changed=true", "action=pause stream=clicks group=all changed=true"} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs lack %q:\n%s", w, logs)
		}
	}
}

func TestScheduleShownAndEscaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	xadd(t, f.client, "orders", "type", "t")
	last := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	hostile := `<script>alert(1)</script> <img src=x onerror=alert(2)>`
	if err := f.client.HSet(ctx, wire.ScheduleKey("orders"),
		wire.ScheduleEntryField("report.daily @every 1h"), `{"tz":"Europe/Berlin","missed":"skip"}`,
		wire.ScheduleTickField("report.daily @every 1h"), strconv.FormatInt(last.UnixMilli(), 10),
		wire.ScheduleEntryField(hostile), `{"tz":"<b>tz</b>","missed":"<i onclick=x>"}`,
		wire.PausedKey("x"), "not an entry field: left out",
	).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.client.HSet(ctx, wire.PausedKey("orders"), `<script>alert(3)</script>`, "1").Err(); err != nil {
		t.Fatal(err)
	}
	want, err := streamadmin.New(f.client).Schedule(ctx, "orders", 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := f.get(t, http.DefaultClient, "/stream?s=orders")
	for _, w := range []string{`id="schedule"`, "report.daily", "@every 1h", "Europe/Berlin", "skip", last.UTC().Format("2006-01-02 15:04:05Z"),
		"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;", "&lt;b&gt;tz&lt;/b&gt;", "&lt;script&gt;alert(3)&lt;/script&gt;"} {
		if !strings.Contains(body, w) {
			t.Errorf("stream page: no %q in\n%s", w, body)
		}
	}
	for _, e := range want {
		if e.Type == "report.daily" && (e.Next.IsZero() || !strings.Contains(body, e.Next.UTC().Format("2006-01-02 15:04:05Z"))) {
			t.Errorf("stream page: want the next tick %v\n%s", e.Next, body)
		}
	}
	_, over, _ := f.get(t, http.DefaultClient, "/")
	for page, b := range map[string]string{"stream": body, "overview": over} {
		for _, bad := range []string{"<script>alert", "<img src=x", "<b>tz", "<i onclick"} {
			if strings.Contains(b, bad) {
				t.Errorf("%s page: unescaped %q in\n%s", page, bad, b)
			}
		}
	}
	// A schedule key of another type: the page says so, and shows the rest.
	if err := f.client.Set(ctx, wire.ScheduleKey("other"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, f.client, "other", "type", "t")
	if code, body, _ := f.get(t, http.DefaultClient, "/stream?s=other"); code != http.StatusOK || !strings.Contains(body, "WRONGTYPE") || !strings.Contains(body, `id="length"`) {
		t.Errorf("stream page with a schedule key of another type = %d\n%s", code, body)
	}
}
