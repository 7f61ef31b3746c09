package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// pauseFlags are the flags pause and resume share.
type pauseFlags struct {
	stream, group string
	asJSON        bool
}

func (f *pauseFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.stream, "stream", "", "the stream, as in WORKER_STREAMS (a partitioned stream's logical name, without braces)")
	cmd.Flags().StringVar(&f.group, "group", "", "the consumer group (default: every group)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the stream's pauses as JSON")
}

// check refuses a missing stream, a key the runtime keeps beside a stream,
// and a group named like the every-group field.
func (f *pauseFlags) check(cmd *cobra.Command) error {
	if f.stream == "" {
		return cli.Usagef(cmd, "--stream is required: the stream to %s", cmd.Name())
	}
	if kind, of, ok := wire.ParseCompanion(f.stream); ok {
		return cli.Usagef(cmd, "--stream %s is the %s key of %s, not a stream: name the stream itself", strconv.Quote(f.stream), kind, strconv.Quote(of))
	}
	if f.group == wire.PauseAllGroups {
		return cli.Usagef(cmd, "--group %s is not a group name: leave --group out for every group", wire.PauseAllGroups)
	}
	if cmd.Flags().Changed("group") && strings.TrimSpace(f.group) == "" {
		return cli.Usagef(cmd, "--group is empty: name a group, or leave --group out for every group")
	}
	return nil
}

func (a *app) pauseCommand() *cobra.Command {
	var f pauseFlags
	cmd := &cobra.Command{
		Use:   "pause --stream S [--group G] [--json]",
		Short: "Stop the workers of a group reading a stream, until resume",
		Long: `Pause a stream for one consumer group, or for every group: each worker of the
group stops reading it within one WORKER_BLOCK (workers check every half
block; a read already waiting returns within the block). Handlers running
then finish and are acknowledged; nothing new is read, replayed or reclaimed
from the stream, and retries that fall due wait in it. The pause is kept in
Redis (the hash S:paused), so it holds across worker restarts and for new
replicas, until streamctl resume. A paused worker stays ready (/readyz); its
streamworker_stream_paused{stream,group} is 1, and streamctl status shows the
pause. A partitioned stream is paused by its logical name (all partitions).

Pausing what is paused already keeps the first pause (and its time).`,
		Example: `  streamctl pause --stream orders
  streamctl pause --stream orders --group billing --json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			already, err := admin.Pause(ctx, f.stream, f.group)
			if err != nil {
				return err
			}
			ps, err := admin.Pauses(ctx, f.stream)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(a.io.out, pauseJSON(f.stream, ps))
			}
			verb := "paused"
			if already {
				verb = "was already paused"
			}
			fmt.Fprintf(a.io.out, "%s %s for %s\n", printable(f.stream), verb, groupWords(f.group))
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func (a *app) resumeCommand() *cobra.Command {
	var f pauseFlags
	cmd := &cobra.Command{
		Use:   "resume --stream S [--group G] [--json]",
		Short: "Let the workers read a paused stream again",
		Long: `Resume a paused stream: without --group every pause of the stream ends; with
--group G the pause of G ends (a pause of every group, if there is one, still
holds G, and is named on stderr). Workers read the stream again within half a
WORKER_BLOCK. Resuming a stream that is not paused is no error.`,
		Example: `  streamctl resume --stream orders
  streamctl resume --stream orders --group billing`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			still, ended, err := admin.Resume(ctx, f.stream, f.group)
			if err != nil {
				return err
			}
			ps, err := admin.Pauses(ctx, f.stream)
			if err != nil {
				return err
			}
			if f.group != "" && streamadmin.PausedFor(still, f.group) {
				fmt.Fprintf(a.io.err, "streamctl: %s is still paused for every group: resume it without --group to end that\n", printable(f.stream))
			}
			if f.asJSON {
				return writeJSON(a.io.out, pauseJSON(f.stream, ps))
			}
			verb := "resumed"
			if !ended {
				verb = "was not paused"
			}
			fmt.Fprintf(a.io.out, "%s %s for %s\n", printable(f.stream), verb, groupWords(f.group))
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func groupWords(g string) string {
	if g == "" {
		return "every group"
	}
	return "group " + printable(g)
}

// The JSON of pause and resume: the stream's pauses after the command. A
// documented interface (docs/cli.md): fields are added, never renamed.
type (
	pausesDoc struct {
		Stream string     `json:"stream"`
		Paused []pauseDoc `json:"paused"` // empty: not paused for any group
	}
	pauseDoc struct {
		Group   string `json:"group"`              // "*": every group
		SinceMS *int64 `json:"since_ms,omitempty"` // unix ms of the pause
	}
)

func pauseJSON(stream string, ps []streamadmin.Pause) pausesDoc {
	doc := pausesDoc{Stream: stream, Paused: pauseDocs(ps)}
	return doc
}

func pauseDocs(ps []streamadmin.Pause) []pauseDoc {
	out := make([]pauseDoc, 0, len(ps))
	for _, p := range ps {
		d := pauseDoc{Group: p.Group}
		if !p.Since.IsZero() {
			ms := p.Since.UnixMilli()
			d.SinceMS = &ms
		}
		out = append(out, d)
	}
	return out
}

// pausedCell is the PAUSED cell of a stream's row: the groups paused, *
// for every group, and since when.
func pausedCell(ps []streamadmin.Pause, now time.Time) string {
	var parts []string
	for _, p := range ps {
		s := p.Group
		if !p.Since.IsZero() {
			s += " (" + age(now.Sub(p.Since)) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}
