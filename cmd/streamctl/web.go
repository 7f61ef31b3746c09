package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	oklog "github.com/oklog/run"
	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin/web"
)

func (a *app) webCommand() *cobra.Command {
	var (
		addr   string
		sample time.Duration
	)
	cmd := &cobra.Command{
		Use:   "web [--addr 127.0.0.1:8090]",
		Short: "Serve the operators' web dashboard",
		Long: `Serve the web dashboard: every stream (partitioned streams folded) with its
length, lag, pending, delayed and dead-letter counts, consumers, pause state
and a rate sparkline; per stream its groups, consumers, partitions, pending
and delayed entries, pauses (to pause and resume as streamctl pause does) and
periodic events; the dead letters, searchable, to replay or purge as
streamctl dlq does. It listens on loopback unless --addr names another address.

The dashboard is read-only unless STREAMCTL_WEB_TOKEN is set: a
comma-separated list of name:secret (a bare secret is named "token"); secrets
have at least 16 bytes. An operator logs in with a secret in the browser, or a
script sends "Authorization: Bearer <secret>". Each change is logged on
stderr with the token's name. See docs/web.md.`,
		Example: `  STREAMCTL_WEB_TOKEN="alice:$(openssl rand -hex 24)" streamctl web
  streamctl web --addr 0.0.0.0:8090   # behind a TLS proxy`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
				return cli.Usagef(cmd, "--addr %q: want host:port, e.g. 127.0.0.1:8090", addr)
			}
			if sample < time.Second {
				return cli.Usagef(cmd, "--sample-every %s: at least 1s", sample)
			}
			tokens, err := web.ParseTokens(a.io.getenv(web.TokenEnv))
			if err != nil {
				return cli.Usagef(cmd, "%v", err)
			}
			// The workers' heartbeat lifetime, to tell each consumer's last beat.
			beat := time.Hour
			if v := a.io.getenv("WORKER_CONSUMER_GONE_AFTER"); v != "" {
				if beat, err = time.ParseDuration(v); err != nil || beat <= 0 {
					return cli.Usagef(cmd, "WORKER_CONSUMER_GONE_AFTER=%q: want a positive duration such as 1h (the workers' setting)", v)
				}
			}
			_, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			return a.serveWeb(cmd.Context(), web.Options{Tokens: tokens, SampleEvery: sample, HeartbeatTTL: beat}, addr)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8090", "address to listen on; loopback unless you name another")
	cmd.Flags().DurationVar(&sample, "sample-every", 10*time.Second, "how often to sample every stream for the rate sparklines")
	return cmd
}

// serveWeb runs the dashboard until ctx ends: the HTTP server and the
// sampler, one run.Group actor each.
func (a *app) serveWeb(ctx context.Context, opts web.Options, addr string) error {
	opts.Client, opts.Logger = a.client, slog.New(slog.NewTextHandler(a.io.err, nil))
	tokens := opts.Tokens
	srv, err := web.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	mode := "read-only (set " + web.TokenEnv + " to allow changes)"
	if len(tokens) > 0 {
		names := make([]string, len(tokens))
		for i, t := range tokens {
			names[i] = t.Name
		}
		mode = "changes allowed for tokens: " + strings.Join(names, ", ")
	}
	fmt.Fprintf(a.io.err, "streamctl: serving the dashboard on http://%s, %s\n", ln.Addr(), mode)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	var g oklog.Group
	{
		g.Add(func() error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		})
	}
	{
		sctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return srv.Run(sctx) }, func(error) { cancel() })
	}
	{
		// A signal (ctx) is a clean exit.
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { <-sctx.Done(); return nil }, func(error) { cancel() })
	}
	return g.Run()
}
