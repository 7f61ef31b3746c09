package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// table writes rows as aligned columns, two spaces apart.
type table struct {
	tw  *tabwriter.Writer
	buf strings.Builder
	w   io.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		// A tab or newline inside a cell would break the columns; an
		// escape sequence would drive the terminal.
		cells[i] = printable(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the table, without the padding an empty last cell leaves
// at the end of its line.
func (t *table) flush() {
	_ = t.tw.Flush()
	lines := strings.SplitAfter(t.buf.String(), "\n")
	for i, l := range lines {
		if body, ok := strings.CutSuffix(l, "\n"); ok {
			lines[i] = strings.TrimRight(body, " ") + "\n"
		}
	}
	_, _ = io.WriteString(t.w, strings.Join(lines, ""))
	t.buf.Reset()
}

// age formats a duration for a person: 850ms, 12.3s, 4m5s, 3h2m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	const day = 24 * time.Hour
	return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
}

// clip shortens s to its first line and at most n runes.
func clip(s string, n int) string {
	s, _, cut := strings.Cut(s, "\n")
	if utf8.RuneCountInString(s) > n {
		s, cut = string([]rune(s)[:n-1]), true
	}
	if cut {
		s += "…"
	}
	return s
}

func itoa(n int64) string { return fmt.Sprint(n) }

// printable returns s as a terminal shows it and nothing else: every
// control character (C0 including tab and newline, DEL, C1), every invalid
// UTF-8 byte and every other rune that is not printable (a bidi override
// that would reorder the rest of the line, say) is written as a Go escape
// (\x1b, \n, \u009b, \xff). Names, types and errors in Redis come from
// anyone who can write to it; streamctl prints them through printable.
func printable(s string) string {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		plain = s[i] >= 0x20 && s[i] < 0x7f
	}
	if plain {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r >= 0x20 && r != 0x7f && (r < 0x80 || strconv.IsPrint(r)):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u009b'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// printableError shows an error's text through printable: errors can
// quote names and replies from Redis. errors.As and errors.Is see through
// it.
type printableError struct{ err error }

func (e printableError) Error() string { return printable(e.err.Error()) }
func (e printableError) Unwrap() error { return e.err }
