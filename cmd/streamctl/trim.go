package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/retention"
	"github.com/streamworker/streamworker/streamadmin"
)

// trimCountLimit bounds how many entries trim counts (reads) to say how many
// go.
const trimCountLimit = 1_000_000

func (a *app) trimCommand() *cobra.Command {
	var (
		stream        string
		dryRun, yes   bool
		exact, asJSON bool
		keep          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trim --stream S (--dry-run | --yes) [--retention D] [--exact] [--json]",
		Short: "Trim a stream up to the oldest entry any group still needs",
		Long: `Trim a stream once, as a worker with WORKER_RETENTION does: up to the oldest
entry any of its consumer groups still needs — the oldest entry pending in a
group, or the first entry not yet delivered to it, whether or not its consumers
run — and with --retention D only entries older than D as well. --dry-run
says what would go and which group holds the oldest entry still needed;
--yes trims. The bound is computed and the trim done in one script, so no
group reads in between. Without --exact, whole nodes of the stream (about 100
entries each) are removed, leaving up to a node of entries below the bound.
A group rewound (XGROUP SETID) below what was trimmed reads on from the
oldest entry left: trimmed entries do not come back.`,
		Example: `  streamctl trim --stream orders --dry-run
  streamctl trim --stream orders --yes --retention 24h
  streamctl trim --stream '{orders:3}' --yes --exact --json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case stream == "":
				return cli.Usagef(cmd, "--stream is required")
			case dryRun == yes:
				return cli.Usagef(cmd, "give one of --dry-run (show what would be trimmed) or --yes (trim)")
			case keep < 0:
				return cli.Usagef(cmd, "--retention %s: want 0 or a positive Go duration such as 24h", keep)
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			o := retention.Options{Exact: exact, DryRun: dryRun, Keep: cmd.Flags().Changed("retention"), Retention: keep}
			res, err := admin.Trim(cmd.Context(), stream, o, trimCountLimit)
			if err != nil {
				return a.partitionHint(cmd.Context(), err, stream)
			}
			if asJSON {
				return writeJSON(a.io.out, trimJSON(res, dryRun))
			}
			writeTrim(a.io.out, res, dryRun)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "stream key (required); for a partitioned stream, one partition such as {orders:3}")
	fl.BoolVar(&dryRun, "dry-run", false, "show what would be trimmed, and why, without trimming")
	fl.BoolVar(&yes, "yes", false, "trim")
	fl.DurationVar(&keep, "retention", 0, "keep entries newer than this too (default: keep only what groups need)")
	fl.BoolVar(&exact, "exact", false, "trim exactly up to the bound (XTRIM MINID =) rather than whole nodes")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// why says what bounds the trim, for a person.
func why(p retention.Plan) string {
	switch p.Reason {
	case retention.ReasonPending:
		return fmt.Sprintf("group %s has %s pending (delivered, not acknowledged)", printable(p.Group), p.MinID)
	case retention.ReasonUndelivered:
		return fmt.Sprintf("group %s has not been delivered %s and what follows", printable(p.Group), p.MinID)
	case retention.ReasonRetention:
		return "entries from " + p.MinID + " on are newer than the retention"
	case retention.ReasonNoGroups:
		return "the stream has no consumer groups and no --retention was given: nothing is trimmed"
	}
	return p.Reason
}

func writeTrim(w io.Writer, r streamadmin.TrimResult, dryRun bool) {
	more := ""
	if r.BelowMore {
		more = "more than "
	}
	fmt.Fprintf(w, "stream %s: %d entries\n", printable(r.Stream), r.Length)
	if r.MinID == "" {
		fmt.Fprintf(w, "kept: %s\n", why(r.Plan))
		return
	}
	fmt.Fprintf(w, "oldest entry needed: %s (%s)\n", r.MinID, why(r.Plan))
	if dryRun {
		fmt.Fprintf(w, "would trim: %s%d entries below %s\n", more, r.Below, r.MinID)
		return
	}
	fmt.Fprintf(w, "trimmed: %d entries (%s%d below %s)\n", r.Trimmed, more, r.Below, r.MinID)
}

type trimDoc struct {
	Stream    string `json:"stream"`
	Length    int64  `json:"length"`
	MinID     string `json:"min_id"`
	Reason    string `json:"reason"`
	Group     string `json:"group"`
	Below     int64  `json:"below"`
	BelowMore bool   `json:"below_more"`
	DryRun    bool   `json:"dry_run"`
	Trimmed   int64  `json:"trimmed"`
}

func trimJSON(r streamadmin.TrimResult, dryRun bool) trimDoc {
	return trimDoc{
		Stream: r.Stream, Length: r.Length, MinID: r.MinID, Reason: r.Reason, Group: r.Group,
		Below: r.Below, BelowMore: r.BelowMore, DryRun: dryRun, Trimmed: r.Trimmed,
	}
}
