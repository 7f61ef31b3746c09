package web

import (
	"context"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/streamadmin"
)

// sampler remembers, per stream, how many entries were ever added to it
// (XINFO STREAM entries-added) at each of its last samples, for the rate
// sparklines of the overview. It keeps them in memory only.
type sampler struct {
	admin  *streamadmin.Admin
	client redis.UniversalClient
	every  time.Duration
	keep   int
	now    func() time.Time

	mu      sync.Mutex
	samples map[string][]sample
}

type sample struct {
	at    time.Time
	added int64
}

func newSampler(admin *streamadmin.Admin, client redis.UniversalClient, every time.Duration, keep int, now func() time.Time) *sampler {
	return &sampler{admin: admin, client: client, every: every, keep: keep, now: now, samples: map[string][]sample{}}
}

// Run samples every interval until ctx ends. A failed sample is skipped:
// the sparkline shows a gap, the page says nothing worse.
func (s *sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		_ = s.runOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce takes one sample of every stream: a SCAN and one pipelined round
// trip of XINFO STREAM.
func (s *sampler) runOnce(ctx context.Context) error {
	streams, err := s.admin.Streams(ctx)
	if err != nil {
		return err
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XInfoStreamCmd, len(streams))
	for i, st := range streams {
		cmds[i] = pipe.XInfoStream(ctx, st)
	}
	_, _ = pipe.Exec(ctx) // a stream deleted meanwhile has no sample
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(streams))
	for i, st := range streams {
		info, err := cmds[i].Result()
		if err != nil {
			continue
		}
		seen[st] = true
		ss := append(s.samples[st], sample{at: now, added: info.EntriesAdded})
		if len(ss) > s.keep {
			ss = ss[len(ss)-s.keep:]
		}
		s.samples[st] = ss
	}
	for st := range s.samples {
		if !seen[st] {
			delete(s.samples, st)
		}
	}
	return nil
}

// rates returns the entries added per second between consecutive samples
// of stream, oldest first.
func (s *sampler) rates(stream string) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.samples[stream]
	if len(ss) < 2 {
		return nil
	}
	out := make([]float64, len(ss)-1)
	for i := 1; i < len(ss); i++ {
		dt := ss[i].at.Sub(ss[i-1].at).Seconds()
		if d := ss[i].added - ss[i-1].added; dt > 0 && d > 0 {
			out[i-1] = float64(d) / dt
		}
	}
	return out
}

// sparkline draws rates as an inline SVG polyline. It is built from
// numbers only, so it is safe HTML; it has no style attribute (the CSP
// allows only the stylesheet).
func sparkline(rates []float64) template.HTML {
	const w, h = 120.0, 24.0
	if len(rates) == 0 {
		return template.HTML(`<span class="muted">—</span>`)
	}
	top := 0.0
	for _, r := range rates {
		top = max(top, r)
	}
	var pts strings.Builder
	for i, r := range rates {
		x := w
		if len(rates) > 1 {
			x = float64(i) * w / float64(len(rates)-1)
		}
		y := h - 1
		if top > 0 {
			y = h - 1 - r/top*(h-2)
		}
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	last := rates[len(rates)-1]
	return template.HTML(`<svg class="spark" width="120" height="24" viewBox="0 0 120 24" role="img" aria-label="` +
		strconv.FormatFloat(last, 'f', 1, 64) + ` per second"><polyline points="` + strings.TrimSpace(pts.String()) + `"/></svg>`)
}
