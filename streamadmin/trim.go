package streamadmin

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/retention"
)

// TrimResult is what Trim found and, unless it was a dry run, did.
type TrimResult struct {
	retention.Plan
	// Length is the stream's length before the trim.
	Length int64
	// Below counts the entries below the bound (what a trim removes), up to
	// the limit Trim was given; BelowMore is true when there are more.
	Below     int64
	BelowMore bool
}

// Trim trims stream up to the oldest entry any of its groups needs (package
// retention), exactly, or with dryRun only says what that would remove and
// which group holds the oldest entry still needed. It counts the entries
// below the bound up to countLimit (reading them: a count costs a read).
// A stream that does not exist is ErrNoStream; a key of another type,
// ErrNotStream.
func (a *Admin) Trim(ctx context.Context, stream string, o retention.Options, countLimit int64) (TrimResult, error) {
	typ, err := a.client.Type(ctx, stream).Result()
	if err != nil {
		return TrimResult{}, fmt.Errorf("reading %s: %w", stream, err)
	}
	switch typ {
	case "stream":
	case "none":
		return TrimResult{}, fmt.Errorf("%q: %w", stream, ErrNoStream)
	default:
		return TrimResult{}, fmt.Errorf("%q holds a %s: %w", stream, typ, ErrNotStream)
	}
	dry := o
	dry.DryRun = true
	p, err := retention.Trim(ctx, a.client, stream, dry)
	if err != nil {
		return TrimResult{}, err
	}
	out := TrimResult{Plan: p}
	if out.Length, err = a.client.XLen(ctx, stream).Result(); err != nil {
		return out, fmt.Errorf("reading %s: %w", stream, err)
	}
	if out.Below, out.BelowMore, err = countBelow(ctx, a.client, stream, p.MinID, countLimit); err != nil {
		return out, err
	}
	if o.DryRun {
		return out, nil
	}
	done, err := retention.Trim(ctx, a.client, stream, o)
	if err != nil {
		return out, err
	}
	out.Plan = done
	return out, nil
}

// countBelow counts the entries of stream below minID, up to limit, paging
// through them with XRANGE; atLeast is true when there are more than limit.
func countBelow(ctx context.Context, c redis.Cmdable, stream, minID string, limit int64) (n int64, atLeast bool, err error) {
	if minID == "" {
		return 0, false, nil
	}
	start := "-"
	for n < limit {
		page := min(1000, limit-n)
		es, err := c.XRangeN(ctx, stream, start, "("+minID, page).Result()
		if err != nil {
			return n, false, fmt.Errorf("counting entries of %s below %s: %w", stream, minID, err)
		}
		n += int64(len(es))
		if int64(len(es)) < page {
			return n, false, nil
		}
		start = "(" + es[len(es)-1].ID
	}
	more, err := c.XRangeN(ctx, stream, start, "("+minID, 1).Result()
	if err != nil {
		return n, false, fmt.Errorf("counting entries of %s below %s: %w", stream, minID, err)
	}
	return n, len(more) > 0, nil
}
