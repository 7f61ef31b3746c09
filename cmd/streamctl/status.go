package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
)

func (a *app) statusCommand() *cobra.Command {
	var (
		streams    []string
		partitions int
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "status [--stream S]... [--partitions N] [--json]",
		Short: "Show streams, their groups and consumers",
		Long: `Show per stream its length, delayed count (S:delayed) and dead-letter count
(S:dlq), and per consumer group its pending count, lag (entries not yet
delivered), the age of its oldest pending entry and its consumers with their
idle time and pending count. Without --stream, every stream in the database
(on a Redis Cluster, of every primary).

With --partitions N each --stream S is a partitioned stream: its partitions
{S:0} … {S:N-1} are shown, those no event has reached yet as empty.

--json prints one JSON document (see docs/cli.md for its fields):
{"streams":[{"stream":..., "length":..., "delayed":..., "dead":...,
  "groups":[{"group":..., "pending":..., "lag":..., "consumers":[...]}]}]}`,
		Example: `  streamctl status
  streamctl status --stream orders --json | jq '.streams[0].groups'
  streamctl status --stream orders --partitions 8`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if partitions != 1 {
				if len(streams) == 0 {
					return cli.Usagef(cmd, "--partitions needs --stream: the partitioned streams to show")
				}
				for _, s := range streams {
					if err := cli.CheckPartitions(cmd, s, partitions); err != nil {
						return err
					}
				}
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			if len(streams) == 0 {
				if streams, err = admin.Streams(ctx); err != nil {
					return err
				}
			}
			var st []streamadmin.StreamStatus
			if partitions > 1 {
				for _, s := range streams {
					ps, err := admin.PartitionStatus(ctx, s, partitions)
					if err != nil {
						return err
					}
					st = append(st, ps...)
				}
			} else if st, err = admin.Status(ctx, streams); err != nil {
				return a.partitionHint(ctx, err, streams...)
			}
			if asJSON {
				return writeJSON(a.io.out, statusJSON(st))
			}
			writeStatus(a.io.out, st)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "stream key; repeat or comma-separate for several (default: every stream)")
	cmd.Flags().IntVar(&partitions, "partitions", 1, "show the partitions {S:0}…{S:N-1} of each --stream S, as the worker's WORKER_PARTITIONS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	return cmd
}

func writeStatus(w io.Writer, st []streamadmin.StreamStatus) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no streams")
		return
	}
	t := newTable(w, "STREAM", "LENGTH", "DELAYED", "DEAD", "GROUPS")
	var groups, consumers int
	for _, s := range st {
		t.row(s.Stream, itoa(s.Length), itoa(s.Delayed), itoa(s.Dead), fmt.Sprint(len(s.Groups)))
		groups += len(s.Groups)
		for _, g := range s.Groups {
			consumers += len(g.Consumers)
		}
	}
	t.flush()
	if groups == 0 {
		return
	}
	fmt.Fprintln(w)
	t = newTable(w, "STREAM", "GROUP", "PENDING", "LAG", "OLDEST PENDING", "CONSUMERS")
	for _, s := range st {
		for _, g := range s.Groups {
			lag, oldest := "?", "-"
			if g.Lag >= 0 {
				lag = itoa(g.Lag)
			}
			if g.OldestPendingID != "" {
				oldest = age(g.OldestPendingAge)
			}
			t.row(s.Stream, g.Group, itoa(g.Pending), lag, oldest, fmt.Sprint(len(g.Consumers)))
		}
	}
	t.flush()
	if consumers == 0 {
		return
	}
	fmt.Fprintln(w)
	t = newTable(w, "STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE")
	for _, s := range st {
		for _, g := range s.Groups {
			for _, c := range g.Consumers {
				t.row(s.Stream, g.Group, c.Consumer, itoa(c.Pending), age(c.Idle))
			}
		}
	}
	t.flush()
}

// The JSON form of status. It is a documented interface (docs/cli.md):
// fields are added, never renamed or removed.
type (
	statusDoc struct {
		Streams []streamDoc `json:"streams"`
	}
	streamDoc struct {
		Stream  string     `json:"stream"`
		Length  int64      `json:"length"`
		Delayed int64      `json:"delayed"`
		Dead    int64      `json:"dead"`
		Groups  []groupDoc `json:"groups"`
	}
	groupDoc struct {
		Group           string        `json:"group"`
		Pending         int64         `json:"pending"`
		Lag             *int64        `json:"lag"` // null: Redis cannot tell
		LastDeliveredID string        `json:"last_delivered_id"`
		OldestPendingID *string       `json:"oldest_pending_id"` // null: nothing pending
		OldestPendingMS *int64        `json:"oldest_pending_age_ms"`
		Consumers       []consumerDoc `json:"consumers"`
	}
	consumerDoc struct {
		Consumer string `json:"consumer"`
		Pending  int64  `json:"pending"`
		IdleMS   int64  `json:"idle_ms"`
	}
)

func statusJSON(st []streamadmin.StreamStatus) statusDoc {
	doc := statusDoc{Streams: make([]streamDoc, 0, len(st))}
	for _, s := range st {
		sd := streamDoc{Stream: s.Stream, Length: s.Length, Delayed: s.Delayed, Dead: s.Dead, Groups: make([]groupDoc, 0, len(s.Groups))}
		for _, g := range s.Groups {
			gd := groupDoc{Group: g.Group, Pending: g.Pending, LastDeliveredID: g.LastDeliveredID, Consumers: make([]consumerDoc, 0, len(g.Consumers))}
			if g.Lag >= 0 {
				gd.Lag = &g.Lag
			}
			if g.OldestPendingID != "" {
				id, ms := g.OldestPendingID, g.OldestPendingAge.Milliseconds()
				gd.OldestPendingID, gd.OldestPendingMS = &id, &ms
			}
			for _, c := range g.Consumers {
				gd.Consumers = append(gd.Consumers, consumerDoc{Consumer: c.Consumer, Pending: c.Pending, IdleMS: c.Idle.Milliseconds()})
			}
			sd.Groups = append(sd.Groups, gd)
		}
		doc.Streams = append(doc.Streams, sd)
	}
	return doc
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
