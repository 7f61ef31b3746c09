package web

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// filter is a dead-letter search: each part that is set must match.
type filter struct {
	Type  string    // substring of the type field, any case
	Error string    // substring of the error field, any case
	From  time.Time // dead-lettered at or after (the entry ID's time)
	To    time.Time // dead-lettered before
}

// timeLayouts are what the From and To fields accept: the browser's
// datetime-local, in UTC, and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// parseFilter reads a filter from the form values type, error, from, to.
func parseFilter(v url.Values) (filter, error) {
	f := filter{Type: strings.TrimSpace(v.Get("type")), Error: strings.TrimSpace(v.Get("error"))}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		s := strings.TrimSpace(v.Get(p.name))
		if s == "" {
			continue
		}
		var err error
		for _, l := range timeLayouts {
			var t time.Time
			if t, err = time.ParseInLocation(l, s, time.UTC); err == nil {
				*p.to = t
				break
			}
		}
		if err != nil {
			return filter{}, fmt.Errorf("%s: %q is not a time (want 2006-01-02T15:04 in UTC, or RFC 3339)", p.name, s)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return filter{}, fmt.Errorf("to (%s) must be after from (%s)", f.To.Format(time.RFC3339), f.From.Format(time.RFC3339))
	}
	return f, nil
}

// values is the filter as form values, for links and hidden fields.
func (f filter) values() url.Values {
	v := url.Values{}
	if f.Type != "" {
		v.Set("type", f.Type)
	}
	if f.Error != "" {
		v.Set("error", f.Error)
	}
	if !f.From.IsZero() {
		v.Set("from", f.From.Format("2006-01-02T15:04:05"))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.Format("2006-01-02T15:04:05"))
	}
	return v
}

func (f filter) empty() bool { return f == filter{} }

func (f filter) match(d streamadmin.DeadLetter) bool {
	return contains(d.Fields[wire.FieldType], f.Type) && contains(d.Fields[wire.FieldError], f.Error)
}

func contains(s, sub string) bool {
	return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// bounds are the entry-ID bounds of the filter's time range, for XRANGE.
func (f filter) bounds() (start, end string) {
	start, end = "-", "+"
	if !f.From.IsZero() {
		start = strconv.FormatInt(max(0, f.From.UnixMilli()), 10) + "-0"
	}
	if !f.To.IsZero() {
		end = "(" + strconv.FormatInt(max(0, f.To.UnixMilli()), 10) + "-0"
	}
	return start, end
}

const (
	// scanBatch is how many dead letters one XRANGE reads.
	scanBatch = 500
	// pageScan bounds how many dead letters one page reads to fill itself
	// with matches; the page then offers to go on from where it stopped.
	pageScan = 20 * scanBatch
	// maxMatches bounds how many dead letters one replay or purge of every
	// match takes; more, and the operator is asked to narrow the search.
	maxMatches = 100_000
)

// dlqPage is a page of a dead-letter search.
type dlqPage struct {
	Entries []streamadmin.DeadLetter
	Total   int64  // XLEN of the dead-letter stream
	Next    string // the ID to go on after; "" at the end
}

// searchDLQ returns up to pageLimit matches of f after the entry ID after
// ("" from the start), reading at most pageScan entries.
func (s *Server) searchDLQ(ctx context.Context, stream string, f filter, after string) (dlqPage, error) {
	start, end := f.bounds()
	if after != "" {
		start = "(" + after
	}
	var page dlqPage
	total, err := s.client.XLen(ctx, wire.DeadLetterKey(stream)).Result()
	if err != nil {
		return page, fmt.Errorf("reading %s: %w", wire.DeadLetterKey(stream), err)
	}
	page.Total = total
	scanned := 0
	for scanned < pageScan {
		batch, last, err := s.admin.DeadLetterRange(ctx, stream, start, end, scanBatch)
		if err != nil {
			return page, err
		}
		scanned += len(batch)
		for i, d := range batch {
			if !f.match(d) {
				continue
			}
			page.Entries = append(page.Entries, d)
			if len(page.Entries) == pageLimit {
				if i < len(batch)-1 || len(batch) == scanBatch {
					page.Next = d.ID
				}
				return page, nil
			}
		}
		if len(batch) < scanBatch {
			return page, nil
		}
		start = "(" + last
		page.Next = last
	}
	return page, nil
}

// matches returns the IDs of every dead letter of stream that matches f,
// up to the entry ID upto, and whether there are more than maxMatches.
func (s *Server) matches(ctx context.Context, stream string, f filter, upto string) ([]string, bool, error) {
	start, end := f.bounds()
	if upto != "" && (end == "+" || idLess(upto, strings.TrimPrefix(end, "("))) {
		end = upto
	}
	var ids []string
	for {
		batch, last, err := s.admin.DeadLetterRange(ctx, stream, start, end, scanBatch)
		if err != nil {
			return nil, false, err
		}
		for _, d := range batch {
			if f.match(d) {
				if len(ids) == maxMatches {
					return ids, true, nil
				}
				ids = append(ids, d.ID)
			}
		}
		if len(batch) < scanBatch {
			return ids, false, nil
		}
		start = "(" + last
	}
}

// idLess reports whether entry ID a sorts before b.
func idLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ami, _ := strconv.ParseUint(am, 10, 64)
	bmi, _ := strconv.ParseUint(bm, 10, 64)
	if ami != bmi {
		return ami < bmi
	}
	asi, _ := strconv.ParseUint(as, 10, 64)
	bsi, _ := strconv.ParseUint(bs, 10, 64)
	return asi < bsi
}
