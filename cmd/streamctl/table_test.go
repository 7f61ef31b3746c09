package main

import (
	"strings"
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		850*time.Millisecond + 400:            "850ms",
		12*time.Second + 340*time.Millisecond: "12.3s",
		4*time.Minute + 5*time.Second + 600*time.Millisecond: "4m6s",
		3*time.Hour + 2*time.Minute + 40*time.Second:         "3h3m",
		47 * time.Hour:                "47h0m",
		50*time.Hour + 30*time.Minute: "2d2h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{"first line\nstack trace", "first line…"},
		{strings.Repeat("é", 10), "éééé…"},
		{"exact", "exact"},
	} {
		n := 5
		if tc.in == "first line\nstack trace" {
			n = 20
		}
		if got := clip(tc.in, n); got != tc.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.in, n, got, tc.want)
		}
	}
}

func TestTableKeepsColumnsWithTabsAndNewlinesInCells(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	tb := newTable(&b, "A", "B")
	tb.row("x\ty", "1\n2")
	tb.flush()
	if want := `A     B` + "\n" + `x\ty  1\n2` + "\n"; b.String() != want {
		t.Errorf("table = %q, want %q", b.String(), want)
	}
}

// TestPrintable: what streamctl prints from Redis reaches a terminal, so
// every control character (C0, DEL, C1), every invalid UTF-8 byte and
// every other character a terminal does not show as itself is written as a
// visible escape; printable text, ASCII or not, stays as it is.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"order.created", "order.created"},
		{"", ""},
		{"café ∑ 注文", "café ∑ 注文"},
		{"a b", "a b"},
		{"\x1b[2J", `\x1b[2J`},
		{"\x1b]0;owned\x07", `\x1b]0;owned\a`},
		{"tab\there\nline\r", `tab\there\nline\r`},
		{"\x00\x7f", `\x00\x7f`},
		{"\x9b" + "31m", `\x9b31m`},                // C1 CSI as a raw byte: invalid UTF-8
		{"\u009b" + "31m", `\u009b31m`},            // C1 CSI encoded as UTF-8
		{"\xff\xfe", `\xff\xfe`},                   // invalid UTF-8
		{"evil\u202egnp.exe", `evil\u202egnp.exe`}, // a bidi override reorders what follows
		{"back\\slash", `back\slash`},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestTableEscapesControlCharactersInCells(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	tb := newTable(&b, "TYPE", "N")
	tb.row("\x1b[2J", "1")
	tb.row("\x9b", "2")
	tb.flush()
	if want := "TYPE     N\n" + `\x1b[2J` + "  1\n" + `\x9b` + "     2\n"; b.String() != want {
		t.Errorf("table = %q, want %q", b.String(), want)
	}
}

func TestTableLeavesNoTrailingSpaces(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	tb := newTable(&b, "A", "NOTE")
	tb.row("x", "")
	tb.row("yy", "gone")
	tb.flush()
	if want := "A   NOTE\nx\nyy  gone\n"; b.String() != want {
		t.Errorf("table = %q, want %q", b.String(), want)
	}
}
