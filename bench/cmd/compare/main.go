// Command compare runs streamworker, a bare go-redis loop, asynq and
// Watermill against one redis-server it starts, and writes a report with
// tables and charts (see bench/README.md). `make bench` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamworker/streamworker/bench/internal/compare"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// run is the harness, or one of its children when the harness started this
// process to run one job.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if compare.IsChild(getenv) {
		return compare.Child(ctx, stdin, stdout)
	}
	return compare.Main(ctx, args, stdout, stderr)
}
