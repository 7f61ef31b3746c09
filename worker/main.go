package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/schedule"
)

// Deps are what the runtime built and hands to a setup function, so handlers
// get the Redis client, logger and metrics registry explicitly.
type Deps struct {
	// Redis is the stream Redis client the runtime uses.
	Redis redis.UniversalClient
	// Logger is the process logger; add a component with Logger.With.
	Logger *slog.Logger
	// Config is the loaded configuration.
	Config config.Config
	// Registerer takes the handlers' own Prometheus metrics, served on
	// /metrics beside the runtime's.
	Registerer prometheus.Registerer
}

// Option changes how Run and Main build the runtime.
type Option func(*options)

type options struct {
	setup    []func(context.Context, Deps) error
	redis    redis.UniversalClient
	logger   *slog.Logger
	registry *prometheus.Registry
	listener net.Listener
	signals  bool
	stdout   io.Writer
	schedule [][2]string     // WithSchedule: type, spec
	tune     []func(*engine) // tests: engine settings no configuration reaches
}

// WithSetup runs f after the Redis client, logger and registry exist and
// before any message is read: the place to build handler dependencies and
// register handlers that need them. An error stops the start.
func WithSetup(f func(ctx context.Context, d Deps) error) Option {
	return func(o *options) { o.setup = append(o.setup, f) }
}

// WithRedis uses client instead of connecting to REDIS_URL. Run does not
// close it. With REDIS_SCRIPTS=functions, build it with cfg.NewClient, which
// makes its scripts FCALLs.
func WithRedis(client redis.UniversalClient) Option { return func(o *options) { o.redis = client } }

// WithLogger uses logger instead of one built from LOG_LEVEL and LOG_FORMAT.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// WithRegistry registers the metrics with reg instead of a new registry.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// WithListener serves HTTP on l instead of listening on WORKER_HTTP_ADDR.
func WithListener(l net.Listener) Option { return func(o *options) { o.listener = l } }

// Main is the whole daemon for a binary of one's own: it loads the
// configuration from the environment, connects, runs until SIGTERM or
// SIGINT, shuts down gracefully and exits (0 after a clean shutdown, 2 for a
// bad configuration, 1 for any other failure). It never returns.
func Main(mux *Mux, opts ...Option) {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamworker: configuration:", err)
		os.Exit(2)
	}
	SetGCDefault(os.Getenv)
	opts = append(opts, WithSignals())
	if err := Run(context.Background(), cfg, mux, opts...); err != nil {
		fmt.Fprintln(os.Stderr, "streamworker:", err)
		if errors.Is(err, schedule.ErrBadEntry) { // WithSchedule: a configuration error
			os.Exit(2)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

// Run runs everything Main runs — the runtime (fetch/dispatch, reclaim,
// promote) and the HTTP server, as one run group — until ctx ends, then shuts down gracefully and
// returns nil. It returns an error when a component fails to start.
func Run(ctx context.Context, cfg config.Config, mux *Mux, opts ...Option) error {
	o := newOptions(cfg, opts)
	var sigs chan os.Signal
	if o.signals {
		// Watched from the start, not from when the run group starts: a
		// SIGTERM that comes while the worker still connects ends it
		// cleanly once it has started (nothing is read by then), where it
		// used to kill the process. Until Run returns: a second signal must
		// not kill the drain.
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}
	entries, err := scheduleEntries(cfg, o.schedule) // schedule.go
	if err != nil {
		return err
	}
	tracer, logger, stopTracing, err := startTracing(ctx, o.logger) // tracing.go: OTEL_* variables
	if err != nil {
		return err
	}
	defer stopTracing() // last: flushes the spans of every message run
	// Listen first: a worker that cannot serve its probes must fail before
	// it touches Redis. Every return before the run group starts below must
	// release what was built up to it; nothing runs on its own until then.
	l := o.listener
	if l == nil && cfg.HTTPAddr != "off" {
		var err error
		if l, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("WORKER_HTTP_ADDR=%q: %w", cfg.HTTPAddr, err)
		}
		defer l.Close() // a return before Serve; after it, closing again is harmless
	}
	client := o.redis
	if client == nil {
		c, err := NewRedisClient(cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		client = c
	}
	if err := checkStart(ctx, cfg, client, logger); err != nil {
		return err
	}
	reg := o.registry
	if reg == nil {
		reg = newRegistry()
	}
	if err := setup(ctx, o.setup, Deps{Redis: client, Logger: logger, Config: cfg, Registerer: reg}); err != nil {
		return err
	}
	metrics := NewMetrics(reg)
	reg.MustRegister(newStreamCollector(client, streamKeys(cfg), cfg.Group, cfg.Partitions > 1))
	rt := newEngine(cfg, client, mux, logger, metrics)
	rt.tracer = tracer
	for _, f := range o.tune {
		f(rt)
	}
	rt.sched = newScheduler(client, cfg, entries, logger) // schedule.go; nil without entries
	logger.Info("starting", "redis", cfg.RedisTarget(), "redis_mode", cfg.RedisMode(), "scripts", cfg.ScriptsMode(), "streams", cfg.Streams, "partitions", cfg.Partitions, "group", cfg.Group,
		"consumer", cfg.Consumer, "concurrency", cfg.Concurrency, "types", mux.Types(), "gc_percent", gcPercent(), "schedule", len(entries))

	var g run.Group
	{ // the caller's context
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	// rtDone closes when the fetch/dispatch actor returns, which it does
	// whenever g.Run runs.
	rtDone := make(chan struct{})
	if o.signals { // SIGTERM or SIGINT starts the shutdown; a second one hurries it
		addSignals(ctx, &g, rt, rtDone, logger, sigs)
	}
	// fetch/dispatch, reclaim, promote
	addRuntime(&g, rt, rtDone)
	if l != nil { // health, readiness, metrics
		addHTTP(&g, l, newHTTPHandler(rt, reg), rtDone, cfg.ShutdownTimeout)
	}
	err = g.Run()
	if errors.Is(err, run.ErrSignal) {
		logger.Info("stopped by signal", "signal", err.Error())
		return nil
	}
	return err
}

// newOptions applies opts over the defaults: logs to stderr, with a logger
// built from LOG_LEVEL and LOG_FORMAT.
func newOptions(cfg config.Config, opts []Option) options {
	o := options{stdout: os.Stderr}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = NewLogger(cfg, o.stdout)
	}
	return o
}

// addRuntime adds rt to g as the fetch/dispatch actor; rtDone closes when
// rt.Run returns, which it does whenever g.Run runs.
func addRuntime(g *run.Group, rt *engine, rtDone chan<- struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		defer close(rtDone)
		return rt.Run(ctx)
	}, func(error) { cancel() })
}

// checkStart refuses to start on a stream layout Redis Cluster cannot serve
// and, with REDIS_SCRIPTS=functions, without the function libraries.
func checkStart(ctx context.Context, cfg config.Config, client redis.UniversalClient, logger *slog.Logger) error {
	if err := checkSlots(client, streamKeys(cfg), cfg.Group, cfg.Consumer); err != nil {
		return err
	}
	if cfg.ScriptsMode() == config.ScriptsFunctions {
		return checkScripts(ctx, client, logger)
	}
	return nil
}

// newRegistry is the metrics registry when the caller brings none: the
// runtime's metrics, the Go runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// setup runs the caller's setup functions in order; the first error stops
// the start.
func setup(ctx context.Context, fs []func(context.Context, Deps) error, deps Deps) error {
	for _, f := range fs {
		if err := f(ctx, deps); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	return nil
}

// addSignals adds the signal actors to g, reading sigs (SIGTERM and
// SIGINT): the first ends the group, a second one hurries rt's drain.
func addSignals(ctx context.Context, g *run.Group, rt *engine, rtDone <-chan struct{}, logger *slog.Logger, sigs <-chan os.Signal) {
	first := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	g.Add(func() error {
		select {
		case s := <-sigs:
			close(first)
			return run.SignalError{Signal: s}
		case <-ctx.Done():
			return nil
		}
	}, func(error) { cancel() })
	// The second signal is watched through the drain, so this actor
	// ignores its interrupt and ends with the runtime instead.
	g.Add(func() error {
		select {
		case <-first:
		case <-rtDone:
			return nil
		}
		select {
		case s := <-sigs:
			logger.Warn("second signal: handing over unfinished work now", "signal", s.String())
			rt.Hurry()
		case <-rtDone:
		}
		return nil
	}, func(error) {})
}

// addHTTP adds the HTTP server on l to g. Interrupted, it keeps answering
// probes and scrapes (readyz says not ready) until the runtime has drained
// (rtDone), or a little past the shutdown timeout.
func addHTTP(g *run.Group, l net.Listener, h http.Handler, rtDone <-chan struct{}, shutdownTimeout time.Duration) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g.Add(func() error {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	}, func(error) {
		select {
		case <-rtDone:
		case <-time.After(shutdownTimeout + 5*time.Second):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// newHTTPHandler serves /healthz (the loops are alive), /readyz (Redis
// reachable, groups ready, not shutting down), /metrics and, with
// WORKER_PPROF=true, /debug/pprof/.
func newHTTPHandler(rt *engine, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := rt.liveness().Check(rt.cfg.Block + 30*time.Second); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := rt.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if rt.health.refusesWrites() {
			// Still ready: acknowledging and reading go on. The body
			// says why work is slowed.
			_, _ = io.WriteString(w, "ready; redis refuses writes (out of memory): retries are held back\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if rt.cfg.PProf {
		addPProf(mux)
	}
	return mux
}

// addPProf serves net/http/pprof's handlers under /debug/pprof/ on mux
// (not on http.DefaultServeMux, where importing the package puts them).
func addPProf(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, block, …
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// NewLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}

// NewRedisClient connects to the stream Redis (REDIS_URL, a Redis Cluster or
// Sentinel; see config.Redis) with a pool sized for the handler pool, the
// fetchers (two a stream: fetchLoop) and the background loops.
func NewRedisClient(cfg config.Config) (redis.UniversalClient, error) {
	return cfg.NewClient(config.MinPoolSize(cfg.Concurrency + 2*len(streamKeys(cfg)) + 8)) // config.Redis.NewClient
}

// checkScripts makes sure, with REDIS_SCRIPTS=functions, that every primary
// has the function libraries before anything runs, rather than failing
// message by message: it returns the error that names what is missing and
// how to load it, or the refusal that no retry changes (NOPERM, a Redis
// without functions). While Redis cannot be reached, or answers what passes
// (LOADING, CLUSTERDOWN, a password not yet in the ACL), it tries again, as
// the runtime does with its reads, until ctx ends; nothing has been read
// then, so a SIGTERM meanwhile ends the process with nothing to hand over.
func checkScripts(ctx context.Context, client redis.UniversalClient, logger *slog.Logger) error {
	libs := scriptfn.Libraries()
	for n := 1; ; n++ {
		err := scriptfn.Check(ctx, client, libs)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, scriptfn.ErrNotLoaded), redis.HasErrorPrefix(err, "NOPERM"), redis.HasErrorPrefix(err, "unknown command"):
			return err
		case ctx.Err() != nil:
			return nil // stopped before the start: the run group ends at once
		}
		logger.Warn("could not check the script libraries (REDIS_SCRIPTS=functions); trying again", "error", err)
		sleepCtx(ctx, retryWait(n))
	}
}

// WithSignals makes Run stop on SIGTERM or SIGINT as Main does.
func WithSignals() Option { return func(o *options) { o.signals = true } }
