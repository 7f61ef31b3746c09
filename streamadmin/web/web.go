// Package web is the operators' dashboard behind `streamctl web`: server-
// rendered pages of the streams, their groups, consumers, partitions,
// pending and delayed entries, pauses and periodic events, and the
// dead-letter streams, which it replays and purges through streamadmin with
// the guarantees of `streamctl dlq`; it pauses and resumes streams as
// `streamctl pause` and `resume` do. It is read-only unless tokens are configured; every
// change needs a token and a CSRF token, and is logged with the token's name.
// Templates and assets are embedded: it needs nothing from the network.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Server.
type Options struct {
	// Client is the stream Redis. Required.
	Client redis.UniversalClient
	// Tokens may make changes (ParseTokens). Default: none, read-only.
	Tokens []Token
	// Logger receives one line per change and per refused request.
	// Default: discard.
	Logger *slog.Logger
	// SampleEvery is how often the rate sparklines sample every stream.
	// Default: 10s.
	SampleEvery time.Duration
	// Samples is how many samples a sparkline keeps. Default: 31 (five
	// minutes at 10s).
	Samples int
	// Refresh is how often the overview and stream pages reload their
	// numbers in the browser. Default: 5s.
	Refresh time.Duration
	// HeartbeatTTL is the lifetime the workers give their heartbeat keys
	// (WORKER_CONSUMER_GONE_AFTER), from which the stream page tells how
	// long ago each consumer last beat. Default: 1h, the workers' default.
	HeartbeatTTL time.Duration
	// SessionTTL is how long a login lasts. Default: 12h.
	SessionTTL time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 10 * time.Second
	}
	if o.Samples < 2 {
		o.Samples = 31
	}
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Second
	}
	if o.HeartbeatTTL <= 0 {
		o.HeartbeatTTL = time.Hour
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Server is the dashboard: an http.Handler, and a sampler to Run beside it.
type Server struct {
	client   redis.UniversalClient
	admin    *streamadmin.Admin
	tokens   []Token
	log      *slog.Logger
	sessions *sessions
	sampler  *sampler
	refresh  time.Duration
	beatTTL  time.Duration
	now      func() time.Time
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("web: Options.Client is required")
	}
	opts.defaults()
	admin := streamadmin.New(opts.Client)
	s := &Server{
		client:   opts.Client,
		admin:    admin,
		tokens:   opts.Tokens,
		log:      opts.Logger.With("component", "web"),
		sessions: newSessions(opts.SessionTTL, 1000, opts.Now),
		sampler:  newSampler(admin, opts.Client, opts.SampleEvery, opts.Samples, opts.Now),
		refresh:  opts.Refresh,
		beatTTL:  opts.HeartbeatTTL,
		now:      opts.Now,
		pages:    map[string]*template.Template{},
	}
	for _, p := range []string{"overview", "stream", "dlq", "entry", "confirm", "result", "login", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.handleOverview)
	m.HandleFunc("GET /stream", s.handleStream)
	m.HandleFunc("GET /dlq", s.handleDLQ)
	m.HandleFunc("GET /dlq/entry", s.handleEntry)
	m.HandleFunc("POST /dlq/action", s.handleAction)
	m.HandleFunc("POST /stream/pause", s.handlePause)
	m.HandleFunc("GET /login", s.handleLoginForm)
	m.HandleFunc("POST /login", s.handleLogin)
	m.HandleFunc("POST /logout", s.handleLogout)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux = m
	return s, nil
}

// Run samples the streams for the rate sparklines until ctx ends.
func (s *Server) Run(ctx context.Context) error { return s.sampler.Run(ctx) }

// ServeHTTP serves the dashboard with its security headers on every
// response.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: Chrome then sends Origin: null, which authorize refuses
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title    string
	Viewer   viewer
	Writable bool // tokens are configured: log in to make changes
	Refresh  int  // seconds; 0: the page does not reload itself
	Warning  string
	Now      time.Time
	Data     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Title: title, Viewer: s.viewerOf(r), Writable: len(s.tokens) > 0, Now: s.now(), Data: data}
	if name == "overview" || name == "stream" {
		p.Refresh = int(s.refresh / time.Second)
	}
	if name == "overview" {
		p.Warning = s.evictionWarning(r.Context())
	}
	var b strings.Builder
	if err := s.pages[name].Execute(&b, p); err != nil {
		s.log.Error("rendering page", "page", name, "error", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows err with status; a stream that is not there is a 404, bad
// input a 400, a refusal a 403, anything else (Redis) a 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	var fb errForbidden
	switch {
	case errors.As(err, &fb):
		status = http.StatusForbidden
		s.log.Warn("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", fb.reason)
	case errors.Is(err, streamadmin.ErrNoStream), errors.Is(err, streamadmin.ErrNotStream):
		status = http.StatusNotFound
	}
	s.render(w, r, status, "error", http.StatusText(status), err.Error())
}

func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request) {
	rows, err := s.overview(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", "Streams", rows)
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("s")
	if name == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("s: name a stream, e.g. /stream?s=orders"))
		return
	}
	p, err := s.loadStream(r.Context(), name)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.render(w, r, http.StatusOK, "stream", name, p)
}

type dlqView struct {
	Stream    string
	DLQ       string
	Filter    filter
	From, To  string // the filter's times, as the form shows them
	Searching bool
	Page      dlqPage
	NextURL   template.URL // "/dlq?..." built by url.Values.Encode: safe
}

func (s *Server) handleDLQ(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stream := q.Get("s")
	if stream == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("s: name a stream, e.g. /dlq?s=orders"))
		return
	}
	f, err := parseFilter(q)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	after := q.Get("after")
	if after != "" {
		if err := streamadmin.CheckID(after); err != nil {
			s.fail(w, r, http.StatusBadRequest, fmt.Errorf("after: %w", err))
			return
		}
	}
	pg, err := s.searchDLQ(r.Context(), stream, f, after)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	fv := f.values()
	v := dlqView{Stream: stream, DLQ: wire.DeadLetterKey(stream), Filter: f, From: fv.Get("from"), To: fv.Get("to"), Searching: !f.empty(), Page: pg}
	if pg.Next != "" {
		fv.Set("s", stream)
		fv.Set("after", pg.Next)
		v.NextURL = template.URL("/dlq?" + fv.Encode())
	}
	s.render(w, r, http.StatusOK, "dlq", "Dead letters of "+stream, v)
}

type entryView struct {
	Stream string
	DLQ    string
	Entry  streamadmin.DeadLetter
	Fields []fieldView
}

type fieldView struct {
	Name  string
	Value string
	Size  int
}

func (s *Server) handleEntry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stream, id := q.Get("s"), q.Get("id")
	if stream == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("s: name a stream"))
		return
	}
	if err := streamadmin.CheckID(id); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("id: %w", err))
		return
	}
	got, _, err := s.admin.DeadLetterRange(r.Context(), stream, id, id, 1)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if len(got) == 0 {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("%s is not in %s", id, wire.DeadLetterKey(stream)))
		return
	}
	v := entryView{Stream: stream, DLQ: wire.DeadLetterKey(stream), Entry: got[0]}
	for _, k := range fieldOrder(got[0].Fields) {
		v.Fields = append(v.Fields, fieldView{Name: k, Value: got[0].Fields[k], Size: len(got[0].Fields[k])})
	}
	s.render(w, r, http.StatusOK, "entry", "Dead letter "+id, v)
}

// fieldOrder lists the runtime's fields first, then the rest by name.
func fieldOrder(fields map[string]string) []string {
	first := []string{wire.FieldType, wire.FieldError, wire.FieldAttempts, wire.FieldFailedAt, wire.FieldOriginID, wire.FieldGroup, wire.FieldConsumer, wire.FieldData}
	var out []string
	for _, k := range first {
		if _, ok := fields[k]; ok {
			out = append(out, k)
		}
	}
	var rest []string
	for k := range fields {
		if !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// Template helpers. Every value a template prints goes through
// html/template's escaping; these only shape numbers and cut long text.
var funcs = template.FuncMap{
	"num": func(n int64) string { return strconv.FormatInt(n, 10) },
	"lag": func(n int64) string {
		if n < 0 {
			return "?"
		}
		return strconv.FormatInt(n, 10)
	},
	"age":   age,
	"clip":  clip,
	"spark": sparkline,
	"utc":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"until": func(now, t time.Time) string {
		if d := t.Sub(now); d > 0 {
			return "in " + age(d)
		}
		return "due"
	},
	"idtime": func(id string) string {
		ms, _, _ := strings.Cut(id, "-")
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return "-"
		}
		return time.UnixMilli(n).UTC().Format("2006-01-02 15:04:05Z")
	},
	"field":     func(fields map[string]string, name string) string { return fields[name] },
	"bytes":     func(n int) string { return strconv.Itoa(n) + " bytes" },
	"maxShow":   func() int { return maxShow },
	"since":     func(now, t time.Time) time.Duration { return now.Sub(t) },
	"pausedFor": streamadmin.PausedFor,
}

// maxShow is how many bytes of one field the entry page shows; lists show
// far less.
const maxShow = 16 << 10

// clip cuts s to at most n bytes, at a rune boundary, marking the cut.
func clip(n int, s string) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// age is a duration as streamctl shows it: 950ms, 12s, 3m4s, 2h5m, 3d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}
