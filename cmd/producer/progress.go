package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows how far a long send has come: a progress bar on a terminal,
// a plain line every interval otherwise (a log, a CI job). It is safe for
// concurrent use.
type progress struct {
	mu    sync.Mutex
	total int64 // -1 when unknown
	bar   *progressbar.ProgressBar

	w     io.Writer
	every time.Duration // between plain lines; between bar redraws: barEvery
	now   func() time.Time
	last  time.Time
	unit  string // of total, for the plain lines: "of input read" or ""

	n      int64 // the last state set, drawn by finish
	status string
}

// barEvery is the least time between two redraws of the bar. The bar's own
// throttle would drop the last update, and with it the final state.
const barEvery = 100 * time.Millisecond

// newProgress returns a progress of total units (-1: unknown) written to w.
// With bytes, the units are input bytes read; otherwise events.
func newProgress(w io.Writer, terminal bool, total int64, bytes bool, every time.Duration) *progress {
	p := &progress{total: total, w: w, every: every, now: time.Now}
	p.last = p.now()
	if bytes {
		p.unit = " of input read"
	}
	if !terminal {
		return p
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowElapsedTimeOnFinish(),
		// No spinner goroutine for an unknown total: it renders on updates.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetRenderBlankState(true),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("msg"))
	}
	p.bar = progressbar.NewOptions64(total, opts...)
	return p
}

// set records n units done; status says what was done ("sent 500, rejected 1").
func (p *progress) set(n int64, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n == p.n && status == p.status {
		return
	}
	p.n, p.status = n, status
	now := p.now()
	if p.bar != nil {
		if now.Sub(p.last) >= barEvery || n == p.total {
			p.last = now
			p.draw()
		}
		return
	}
	if now.Sub(p.last) >= p.every {
		p.last = now
		if p.total > 0 {
			fmt.Fprintf(p.w, "producer: %s (%d%%%s)\n", status, n*100/p.total, p.unit)
		} else {
			fmt.Fprintf(p.w, "producer: %s\n", status)
		}
	}
}

// printf writes to w, often the progress's own writer, never while the
// progress is written: send reports rejected lines from one goroutine while
// another sets the progress.
func (p *progress) printf(w io.Writer, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(w, format, args...)
}

// finish ends the bar's line; a closing summary follows on stdout.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.draw()
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}

func (p *progress) draw() {
	p.bar.Describe(p.status)
	_ = p.bar.Set64(p.n)
}
