package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testStatusPartial names with --stream a stream that exists, one that does
// not and a key that is a string: the table shows all three, each that is
// not there says so in its row, stderr names them, and the exit status is 1
// (a stream deleted while status runs is shown the same way, as deleted,
// with exit status 0: streamadmin's TestStatusShowsWhatVanishesWhileItRuns).
func testStatusPartial(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.add(f.stream, "type", "a")
	f.add(f.stream, "type", "a")
	f.group("workers")
	f.read("workers", "w1", 1)
	missing, str := f.stream+"-missing", f.stream+"-string"
	f.c.Set(f.ctx, str, "x", 0)
	streams := missing + "," + f.stream + "," + str
	wantErr := `streamctl: no such stream: "` + missing + `"` + "\n" +
		`streamctl: key "` + str + `" is a string, not a stream` + "\n"

	r := c.run(t, []string{"status", "--stream", streams})
	r.Want(t, 1)
	if r.Stderr != wantErr {
		t.Errorf("stderr = %q, want %q", r.Stderr, wantErr)
	}
	tables := strings.Split(r.Stdout, "\n\n")
	lines := strings.Split(strings.TrimSpace(tables[0]), "\n")
	want := [][]string{
		{"STREAM", "LENGTH", "DELAYED", "DEAD", "GROUPS", "MEMORY", "ACKED", "NOTE"},
		{missing, "-", "0", "0", "-", "-", "-", "no such stream"},
		{f.stream, "2", "0", "0", "1", "<size>", "0 B (0)"},
		{str, "-", "0", "0", "-", "-", "-", "not a stream"},
	}
	for i := range lines {
		lines[i] = sizes.ReplaceAllString(lines[i], "<size>  ")
	}
	if diff := cmp.Diff(want, normalise(lines)); diff != "" {
		t.Errorf("stream table (-want +got):\n%s\nfull:\n%s", diff, r.Stdout)
	}
	requireAligned(t, tables[0])
	if len(tables) < 2 || !strings.Contains(tables[1], "workers") {
		t.Errorf("the group of the stream that is there is not shown:\n%s", r.Stdout)
	}

	r = c.run(t, []string{"status", "--stream", streams, "--json"})
	r.Want(t, 1)
	if r.Stderr != wantErr {
		t.Errorf("--json: stderr = %q, want %q", r.Stderr, wantErr)
	}
	var doc struct {
		Streams []struct {
			Stream  string           `json:"stream"`
			Length  int64            `json:"length"`
			Missing string           `json:"missing"`
			Groups  []map[string]any `json:"groups"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("--json: stdout is not JSON: %v\n%s", err, r.Stdout)
	}
	if len(doc.Streams) != 3 || doc.Streams[0].Missing != "no such stream" || doc.Streams[1].Missing != "" ||
		doc.Streams[1].Length != 2 || len(doc.Streams[1].Groups) != 1 || doc.Streams[2].Missing != "not a stream" {
		t.Errorf("--json: %s", r.Stdout)
	}
}

// normalise splits table lines into cells on runs of two or more spaces.
func normalise(lines []string) [][]string {
	var out [][]string
	for _, l := range lines {
		var cells []string
		for _, c := range strings.Split(l, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		out = append(out, cells)
	}
	return out
}
