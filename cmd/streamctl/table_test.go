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
	if want := "A    B\nx y  1 2\n"; b.String() != want {
		t.Errorf("table = %q, want %q", b.String(), want)
	}
}
