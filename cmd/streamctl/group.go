package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

func (a *app) groupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Change a consumer group: rewind it",
		Args:  cli.UnknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef(cmd, "missing command: rewind")
		},
	}
	cmd.AddCommand(a.groupRewindCommand())
	return cmd
}

func (a *app) groupRewindCommand() *cobra.Command {
	var (
		stream, group, to string
		partitions        int
		yes, dryRun       bool
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "rewind --stream S --group G --to ID|TIME|start (--dry-run | --yes) [--partitions N] [--json]",
		Short: "Deliver a group's history again from a point",
		Long: `Set a consumer group back to a point of its stream (XGROUP SETID), so that
the entries after it are delivered to the group again and processed a second
time. --to is an entry ID (the entries after it), an RFC 3339 time (the
entries added at or after it) or start (every entry in the stream).

--dry-run changes nothing and says how many entries would be delivered
again; --yes rewinds. One of them is required. The entries are counted on the
server in chunks, however long the history. The group's entries-read counter
is set too, so its lag stays right (unless an entry after the point was
deleted: then Redis reports the lag as unknown until it can tell again).

Pending entries stay pending: those after the point are delivered again and
leave the pending list when acknowledged; those before it stay for the
reclaimer. Entries marked cancelled in the last 7 days (streamctl cancel) are
acknowledged without running again, and so, with WORKER_DEDUPE_WINDOW set, are
entries whose id was processed inside the window. A point after the group's last delivered
entry is refused: a rewind only moves back. With --partitions N every
partition {S:0} … {S:N-1} is rewound to the same point; one without the
group is skipped.`,
		Example: `  streamctl group rewind --stream orders --group workers --to 2026-01-02T15:00:00Z --dry-run
  streamctl group rewind --stream orders --group workers --to 1700000000000-0 --yes
  streamctl group rewind --stream orders --partitions 8 --group workers --to start --yes --json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case stream == "":
				return cli.Usagef(cmd, "--stream is required")
			case group == "":
				return cli.Usagef(cmd, "--group is required")
			case to == "":
				return cli.Usagef(cmd, "--to is required: an entry ID, an RFC 3339 time or start")
			case yes && dryRun:
				return cli.Usagef(cmd, "--yes and --dry-run cannot be used together")
			case !yes && !dryRun:
				return cli.Usagef(cmd, "a rewind delivers every entry after the point again: add --yes to rewind, or --dry-run to count them first")
			}
			if err := cli.CheckPartitions(cmd, stream, partitions); err != nil {
				return err
			}
			point, err := streamadmin.ParseRewindPoint(to)
			if err != nil {
				return cli.Usagef(cmd, "--to %v", err)
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			streams := []string{stream}
			if partitions > 1 {
				streams = wire.PartitionStreams(stream, partitions)
			}
			var rows []rewindRow
			for _, s := range streams {
				plan, err := admin.Rewind(cmd.Context(), s, group, point, yes)
				switch {
				case partitions > 1 && (errors.Is(err, streamadmin.ErrNoStream) || errors.Is(err, streamadmin.ErrNoGroup)):
					rows = append(rows, rewindRow{plan: plan, skipped: err.Error()})
				case err != nil:
					a.writeRewind(asJSON, group, to, point, dryRun, rows)
					if partitions == 1 {
						return a.partitionHint(cmd.Context(), err, stream)
					}
					return err
				default:
					rows = append(rows, rewindRow{plan: plan})
				}
			}
			return a.writeRewind(asJSON, group, to, point, dryRun, rows)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "stream key (required); with --partitions, the logical name")
	fl.StringVar(&group, "group", "", "consumer group to rewind (required)")
	fl.StringVar(&to, "to", "", "the point: an entry ID, an RFC 3339 time, or start (required)")
	fl.IntVar(&partitions, "partitions", 1, "rewind every partition of a stream partitioned in N")
	fl.BoolVar(&yes, "yes", false, "rewind: the entries after the point are delivered again")
	fl.BoolVar(&dryRun, "dry-run", false, "change nothing; say how many entries would be delivered again")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// rewindRow is one stream's plan, or why it was skipped.
type rewindRow struct {
	plan    streamadmin.RewindPlan
	skipped string
}

func (a *app) writeRewind(asJSON bool, group, to, point string, dryRun bool, rows []rewindRow) error {
	if asJSON {
		return writeJSON(a.io.out, rewindJSON(group, to, point, dryRun, rows))
	}
	writeRewindText(a.io.out, dryRun, rows)
	return nil
}

func writeRewindText(w io.Writer, dryRun bool, rows []rewindRow) {
	for _, r := range rows {
		p := r.plan
		s, g := printable(p.Stream), printable(p.Group)
		switch {
		case r.skipped != "":
			fmt.Fprintf(w, "%s: skipped: %s\n", s, printable(r.skipped))
		case dryRun:
			fmt.Fprintf(w, "%s: group %s would go back from %s to %s: %s delivered again; %s pending (dry run: nothing changed)\n",
				s, g, p.From, p.To, entries(p.Redeliver), entries(p.Pending))
		default:
			fmt.Fprintf(w, "%s: group %s went back from %s to %s: %s to deliver again; %s pending\n",
				s, g, p.From, p.To, entries(p.Redeliver), entries(p.Pending))
		}
	}
}

// entries is "1 entry", "2 entries".
func entries(n int64) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

type (
	rewindDoc struct {
		Group   string         `json:"group"`
		To      string         `json:"to"`
		Point   string         `json:"point"`
		DryRun  bool           `json:"dry_run"`
		Streams []rewindRowDoc `json:"streams"`
	}
	rewindRowDoc struct {
		Stream          string `json:"stream"`
		LastDeliveredID string `json:"last_delivered_id,omitempty"`
		Redeliver       int64  `json:"redeliver"`
		Pending         int64  `json:"pending"`
		EntriesRead     *int64 `json:"entries_read"`
		Rewound         bool   `json:"rewound"`
		Skipped         string `json:"skipped,omitempty"`
	}
)

func rewindJSON(group, to, point string, dryRun bool, rows []rewindRow) rewindDoc {
	doc := rewindDoc{Group: group, To: to, Point: point, DryRun: dryRun, Streams: make([]rewindRowDoc, 0, len(rows))}
	for _, r := range rows {
		p := r.plan
		d := rewindRowDoc{Stream: p.Stream, LastDeliveredID: p.From, Redeliver: p.Redeliver, Pending: p.Pending, Rewound: p.Done, Skipped: r.skipped}
		if p.EntriesRead >= 0 && r.skipped == "" {
			d.EntriesRead = &p.EntriesRead
		}
		doc.Streams = append(doc.Streams, d)
	}
	return doc
}
