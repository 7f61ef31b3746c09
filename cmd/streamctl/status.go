package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

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
		Long: `Show per stream its length, delayed count (S:delayed), dead-letter count
(S:dlq), memory (MEMORY USAGE, sampled) and the part of it held by entries
every group is done with, which trimming would give back (ACKED: bytes, then
entries; an estimate, exact when no group has entries pending), and per
consumer group its pending count, lag (entries not yet
delivered), the age of its oldest pending entry and its consumers with their
idle time and pending count. Without --stream, every stream in the database
(on a Redis Cluster, of every primary).

A stream named with --stream that does not exist, or a key that is not a
stream, is shown as such (NOTE column) with the others, named on stderr, and
makes the exit status 1. A stream or group deleted while status runs is shown
as deleted, and is no error.

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
			// Each row says what was found; the errors of streams named
			// that are not there are in the rows too (Missing).
			var st []streamadmin.StreamStatus
			switch {
			case partitions > 1:
				for _, s := range streams {
					ps, err := admin.PartitionStatus(ctx, s, partitions)
					if ps == nil {
						return err
					}
					st = append(st, ps...)
				}
			case len(streams) == 0:
				if st, err = admin.StatusAll(ctx); err != nil {
					return err
				}
			default:
				if st, err = admin.Status(ctx, streams); st == nil {
					return err
				}
			}
			return a.showStatus(ctx, st, asJSON)
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "stream key; repeat or comma-separate for several (default: every stream)")
	cmd.Flags().IntVar(&partitions, "partitions", 1, "show the partitions {S:0}…{S:N-1} of each --stream S, as the worker's WORKER_PARTITIONS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	return cmd
}

// showStatus prints st, and on stderr the streams named that are not there.
// Those make the exit status 1: the rows of the others are printed first,
// unless there are none to print. A stream or group deleted while status
// ran is a state its row shows, and no error.
func (a *app) showStatus(ctx context.Context, st []streamadmin.StreamStatus, asJSON bool) error {
	var notThere []streamadmin.StreamStatus
	for _, s := range st {
		if s.Missing != nil && !errors.Is(s.Missing, streamadmin.ErrDeleted) {
			notThere = append(notThere, s)
		}
	}
	if len(notThere) == 0 || len(notThere) < len(st) {
		if asJSON {
			if err := writeJSON(a.io.out, statusJSON(st)); err != nil {
				return err
			}
		} else {
			writeStatus(a.io.out, st)
		}
	}
	if len(notThere) == 0 {
		return nil
	}
	for _, s := range notThere {
		fmt.Fprintln(a.io.err, "streamctl: "+printable(a.partitionHint(ctx, s.Missing, s.Stream).Error()))
	}
	return &cli.ExitError{Code: 1}
}

// missingNote is the NOTE and the JSON "missing" of a stream whose length
// and groups are not known.
func missingNote(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, streamadmin.ErrDeleted):
		return streamadmin.ErrDeleted.Error()
	case errors.Is(err, streamadmin.ErrNoStream):
		return streamadmin.ErrNoStream.Error()
	case errors.Is(err, streamadmin.ErrNotStream):
		return streamadmin.ErrNotStream.Error()
	}
	return err.Error()
}

func writeStatus(w io.Writer, st []streamadmin.StreamStatus) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no streams")
		return
	}
	// NOTE and PAUSED columns only when a row needs one: the usual table is
	// unchanged.
	var missing, deletedGroups, paused, pausedGroups bool
	for _, s := range st {
		missing = missing || s.Missing != nil
		paused = paused || len(s.Paused) > 0
		for _, g := range s.Groups {
			deletedGroups = deletedGroups || g.Deleted
			pausedGroups = pausedGroups || g.Paused
		}
	}
	now := time.Now()
	t := newTable(w, noted(missing, "NOTE", noted(paused, "PAUSED", "STREAM", "LENGTH", "DELAYED", "DEAD", "GROUPS", "MEMORY", "ACKED")...)...)
	var groups, consumers int
	for _, s := range st {
		length, ngroups, memory, acked := itoa(s.Length), fmt.Sprint(len(s.Groups)), sizeText(s.Memory), ackedCell(s)
		if s.Missing != nil {
			length, ngroups, memory, acked = "-", "-", "-", "-"
		}
		t.row(noted(missing, missingNote(s.Missing), noted(paused, pausedCell(s.Paused, now), s.Stream, length, itoa(s.Delayed), itoa(s.Dead), ngroups, memory, acked)...)...)
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
	t = newTable(w, noted(deletedGroups, "NOTE", noted(pausedGroups, "PAUSED", "STREAM", "GROUP", "PENDING", "LAG", "OLDEST PENDING", "CONSUMERS")...)...)
	for _, s := range st {
		for _, g := range s.Groups {
			lag, oldest, ncons, note := "?", "-", fmt.Sprint(len(g.Consumers)), ""
			if g.Lag >= 0 {
				lag = itoa(g.Lag)
			}
			if g.OldestPendingID != "" {
				oldest = age(g.OldestPendingAge)
			}
			if g.Deleted {
				oldest, ncons, note = "?", "?", streamadmin.ErrDeleted.Error()
			}
			p := ""
			if g.Paused {
				p = "paused"
			}
			t.row(noted(deletedGroups, note, noted(pausedGroups, p, s.Stream, g.Group, itoa(g.Pending), lag, oldest, ncons)...)...)
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

// noted appends note to cells when the table has a NOTE column.
// ackedCell is the ACKED column: the bytes of the entries every group is
// done with, estimated, and how many they are; "?" when a group's lag is
// unknown.
func ackedCell(s streamadmin.StreamStatus) string {
	if s.Acked < 0 {
		return "?"
	}
	return sizeText(s.AckedMemory) + " (" + itoa(s.Acked) + ")"
}

// sizeText is n bytes in B, KiB, MiB, GiB or TiB, with one decimal above B.
func sizeText(n int64) string {
	if n < 1024 {
		return itoa(n) + " B"
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}

func noted(has bool, note string, cells ...string) []string {
	if has {
		return append(cells, note)
	}
	return cells
}

// The JSON form of status. It is a documented interface (docs/cli.md):
// fields are added, never renamed or removed.
type (
	statusDoc struct {
		Streams []streamDoc `json:"streams"`
	}
	streamDoc struct {
		Stream  string `json:"stream"`
		Length  int64  `json:"length"`
		Delayed int64  `json:"delayed"`
		Dead    int64  `json:"dead"`
		// Memory is MEMORY USAGE of the stream (SAMPLES 5), bytes.
		Memory int64 `json:"memory_bytes"`
		// Acked and AckedMemory estimate the entries every group is done
		// with that trimming would remove, and their bytes; null when a
		// group's lag is unknown.
		Acked       *int64     `json:"acked_entries"`
		AckedMemory *int64     `json:"acked_memory_bytes"`
		Groups      []groupDoc `json:"groups"`
		// Missing is set when length and groups are not known: "no such
		// stream", "not a stream" or "deleted while status ran".
		Missing string `json:"missing,omitempty"`
		// Paused are the stream's pauses (streamctl pause); empty when
		// none.
		Paused []pauseDoc `json:"paused"`
	}
	groupDoc struct {
		Group           string        `json:"group"`
		Pending         int64         `json:"pending"`
		Lag             *int64        `json:"lag"` // null: Redis cannot tell
		LastDeliveredID string        `json:"last_delivered_id"`
		OldestPendingID *string       `json:"oldest_pending_id"` // null: nothing pending
		OldestPendingMS *int64        `json:"oldest_pending_age_ms"`
		Consumers       []consumerDoc `json:"consumers"`
		Deleted         bool          `json:"deleted,omitempty"` // destroyed while status ran: consumers and oldest pending unknown
		Paused          bool          `json:"paused"`            // its workers do not read the stream (streamctl pause)
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
		sd := streamDoc{Stream: s.Stream, Length: s.Length, Delayed: s.Delayed, Dead: s.Dead, Memory: s.Memory, Groups: make([]groupDoc, 0, len(s.Groups)), Missing: missingNote(s.Missing), Paused: pauseDocs(s.Paused)}
		if s.Acked >= 0 {
			sd.Acked, sd.AckedMemory = &s.Acked, &s.AckedMemory
		}
		for _, g := range s.Groups {
			gd := groupDoc{Group: g.Group, Pending: g.Pending, LastDeliveredID: g.LastDeliveredID, Consumers: make([]consumerDoc, 0, len(g.Consumers)), Deleted: g.Deleted, Paused: g.Paused}
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
