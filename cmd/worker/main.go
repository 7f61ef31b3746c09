// Command worker is the streamworker daemon: it consumes the configured
// streams with the built-in handlers. With --demo it runs a self-contained
// demonstration on an embedded Redis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/builtin"
	"github.com/streamworker/streamworker/worker"
)

func main() {
	worker.SetGCDefault(os.Getenv)
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) || errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	demo := fs.Bool("demo", false, "run a demonstration: embedded in-memory Redis unless REDIS_URL is set, sample events, a summary")
	events := fs.Int("demo-events", 300, "with --demo, how many sample events to feed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (configuration comes from the environment; see README)", errUsage, fs.Arg(0))
	}
	if *demo {
		return runDemo(ctx, *events, getenv, stdout, stderr)
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	plugins, err := builtin.LoadConfig()
	if err != nil {
		return err
	}
	mux := worker.NewMux()
	var b builtins
	defer b.close()
	return worker.Run(ctx, cfg, mux, b.setup(plugins, mux, pluginOptions{}),
		worker.WithLogger(worker.NewLogger(cfg, stderr)), worker.WithSignals())
}
