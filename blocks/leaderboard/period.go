package leaderboard

import (
	"fmt"
	"time"
)

// Period is the span of a periodic board.
type Period int

// The periods a board can cover. Each starts at midnight (or the top of the
// hour) in the location of the time it is given; a week starts on Monday
// and is named by its ISO 8601 week.
const (
	Hourly Period = iota + 1
	Daily
	Weekly
	Monthly
)

// String is the period's name in keys: hourly, daily, weekly or monthly.
func (p Period) String() string {
	switch p {
	case Hourly:
		return "hourly"
	case Daily:
		return "daily"
	case Weekly:
		return "weekly"
	case Monthly:
		return "monthly"
	}
	return fmt.Sprintf("Period(%d)", int(p))
}

// Bucket names the period containing t: 2026-11-25T13 (hourly),
// 2026-11-25 (daily), 2026-W48 (weekly), 2026-11 (monthly).
func (p Period) Bucket(t time.Time) string {
	switch p {
	case Hourly:
		return t.Format("2006-01-02T15")
	case Daily:
		return t.Format("2006-01-02")
	case Weekly:
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	case Monthly:
		return t.Format("2006-01")
	}
	panic("leaderboard: unknown " + p.String())
}

// Bounds returns when the period containing t starts and ends (the start
// of the next one), in t's location.
func (p Period) Bounds(t time.Time) (start, end time.Time) {
	y, m, d := t.Date()
	loc := t.Location()
	switch p {
	case Hourly:
		start = time.Date(y, m, d, t.Hour(), 0, 0, 0, loc)
		return start, start.Add(time.Hour)
	case Daily:
		start = time.Date(y, m, d, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 0, 1)
	case Weekly:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 0, 7)
	case Monthly:
		start = time.Date(y, m, 1, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 1, 0)
	}
	panic("leaderboard: unknown " + p.String())
}
