// Command streamctl shows and repairs what is happening in streamworker's
// streams: per stream its length, delayed and dead-letter counts, consumer
// groups with pending entries, lag and consumers; the pending entries
// themselves; the dead-letter stream, whose entries it lists, replays into
// the stream or purges; it cancels events that have not run and rewinds a
// group to process history again. It connects to the worker's stream Redis with the
// worker's settings (REDIS_URL or --redis-url, a Redis Cluster or Sentinel).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

func main() {
	// go-redis logs failed dials itself; the command reports the error once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{out: os.Stdout, err: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(cli.ExitCode("streamctl", err, os.Stderr))
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// stdio is what the process gets from outside besides its arguments.
type stdio struct {
	out, err io.Writer
	getenv   func(string) string
}

// app holds the settings every subcommand shares.
type app struct {
	io       stdio
	redisURL string
	client   redis.UniversalClient // set by admin
}

// admin connects and returns the Admin every subcommand uses, and the
// function that closes its connection.
func (a *app) admin() (*streamadmin.Admin, func(), error) {
	client, err := producer.Connect(a.io.getenv, a.redisURL)
	if err != nil {
		return nil, nil, err
	}
	a.client = client
	return streamadmin.New(client), func() { _ = client.Close() }, nil
}

// partitioned returns the first partition of stream when stream is not
// there but looks like the logical name of a partitioned stream: it has no
// braces and {stream:0} exists.
func (a *app) partitioned(ctx context.Context, stream string) (string, bool) {
	if a.client == nil || strings.ContainsAny(stream, "{}") {
		return "", false
	}
	p := wire.PartitionStream(stream, 0)
	n, err := a.client.Exists(ctx, p, wire.DeadLetterKey(p)).Result()
	return p, err == nil && n > 0
}

// partitionHint adds to a no-such-stream error, when the stream looks
// partitioned, how to name its partitions.
func (a *app) partitionHint(ctx context.Context, err error, streams ...string) error {
	if !errors.Is(err, streamadmin.ErrNoStream) {
		return err
	}
	for _, s := range streams {
		if p, ok := a.partitioned(ctx, s); ok {
			return fmt.Errorf("%w; %q looks partitioned (%s exists): name a partition, e.g. --stream '%s', or see them all with status --stream %s --partitions N", err, s, p, p, s)
		}
	}
	return err
}

// partitionNote says on stderr how to name a partition, when stream is empty
// and looks partitioned.
func (a *app) partitionNote(ctx context.Context, stream string) {
	if p, ok := a.partitioned(ctx, stream); ok {
		fmt.Fprintf(a.io.err, "streamctl: %q looks partitioned (%s exists): name a partition, e.g. --stream '%s'\n", stream, p, p)
	}
}

func run(ctx context.Context, args []string, sio stdio) error {
	a := &app{io: sio}
	root := &cobra.Command{
		Use:   "streamctl",
		Short: "Inspect and repair streamworker streams",
		Long: `Inspect and repair streamworker streams: status of streams, groups and
consumers; pending entries; the dead-letter stream (list, replay, purge);
pausing and resuming a stream; cancelling events that have not run;
rewinding a group to process history again; the Lua scripts as Redis
functions (load, status); the periodic events (schedule); a web dashboard
(web).

` + cli.ConnectionHelp + `

Exit status: 0 ok, 1 failure, 2 usage.`,
		Args: cli.UnknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef(cmd, "missing command: status, pending, dlq, pause, resume, cancel, group, scripts, schedule, trim or web")
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cli.Root(root, args, &a.redisURL)
	root.AddCommand(a.statusCommand(), a.pendingCommand(), a.dlqCommand(), a.pauseCommand(), a.resumeCommand(), a.cancelCommand(), a.groupCommand(), a.scriptsCommand(), a.scheduleCommand(), a.trimCommand(), a.webCommand())
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	if err := root.ExecuteContext(ctx); err != nil {
		return printableError{err}
	}
	return nil
}
