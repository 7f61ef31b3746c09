package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile are values a producer or a misbehaving client can put in Redis:
// a type that clears the screen, a C1 CSI as a raw byte (invalid UTF-8) and
// as UTF-8, and an OSC that retitles the terminal, ended by BEL.
const (
	clearScreen = "\x1b[2J"
	rawCSI      = "\x9b31m"
	utf8CSI     = "\u009b31m"
	retitle     = "\x1b]0;owned\x07"
)

// testEscapes puts terminal escape sequences in a stream's name, types,
// consumer and group names and a dead letter's error, and checks that
// status, pending and dlq ls print each as a visible escape and never a
// control character or an invalid UTF-8 byte.
func testEscapes(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.stream += clearScreen
	f.add(f.stream, "type", clearScreen)
	f.add(f.stream, "type", rawCSI)
	f.group("g" + utf8CSI)
	f.read("g"+utf8CSI, "w"+retitle, 2)
	f.dead(clearScreen, "failed: "+rawCSI+" \xff")

	for _, tc := range []struct {
		name string
		args []string
		want []string // visible escapes the output must hold
	}{
		{"Status", []string{"status", "--stream", f.stream}, []string{`orders\x1b[2J`, `g\u009b31m`, `w\x1b]0;owned\a`}},
		{"Pending", []string{"pending", "--stream", f.stream}, []string{`g\u009b31m`, `w\x1b]0;owned\a`, `\x1b[2J`, `\x9b31m`}},
		{"PendingOneGroup", []string{"pending", "--stream", f.stream, "--group", "g" + utf8CSI, "--limit", "1"}, []string{`g\u009b31m`}},
		{"PendingNoSuchGroup", []string{"pending", "--stream", f.stream, "--group", "nope"}, []string{`g\u009b31m`}},
		{"DLQ", []string{"dlq", "ls", "--stream", f.stream}, []string{`\x1b[2J`, `failed: \x9b31m \xff`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, tc.args)
			out := r.Stdout + r.Stderr
			for i, line := range strings.Split(out, "\n") {
				if !utf8.ValidString(line) {
					t.Errorf("line %d is not valid UTF-8: %q", i+1, line)
				}
				for _, ch := range line {
					if ch < 0x20 || ch == 0x7f || (ch >= 0x80 && ch <= 0x9f) {
						t.Errorf("line %d holds control character %U: %q", i+1, ch, line)
						break
					}
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not show %s:\n%s", w, out)
				}
			}
		})
	}
}
