package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// testTrim: --dry-run names the group holding the oldest entry still needed
// and counts what would go, trimming nothing; --yes trims exactly that; a
// missing stream fails with exit 1.
func testTrim(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.group("fast")
	f.group("slow")
	var ids []string
	for range 10 {
		ids = append(ids, f.add(f.stream, "type", "t"))
	}
	f.read("fast", "a", 10)
	if err := f.c.XAck(f.ctx, f.stream, "fast", ids...).Err(); err != nil {
		t.Fatal(err)
	}
	f.read("slow", "b", 6)
	if err := f.c.XAck(f.ctx, f.stream, "slow", ids[:4]...).Err(); err != nil {
		t.Fatal(err)
	}
	r := c.run(t, []string{"trim", "--stream", f.stream, "--dry-run"})
	r.Want(t, 0)
	want := "stream " + f.stream + ": 10 entries\n" +
		"oldest entry needed: " + ids[4] + " (group slow has " + ids[4] + " pending (delivered, not acknowledged))\n" +
		"would trim: 4 entries below " + ids[4] + "\n"
	if r.Stdout != want {
		t.Errorf("dry run stdout:\n%s\nwant:\n%s", r.Stdout, want)
	}
	if n := f.c.XLen(f.ctx, f.stream).Val(); n != 10 {
		t.Fatalf("a dry run trimmed: length %d", n)
	}
	r = c.run(t, []string{"trim", "--stream", f.stream, "--yes", "--exact", "--json"})
	r.Want(t, 0)
	var doc trimDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.Stdout)
	}
	if doc.Trimmed != 4 || doc.MinID != ids[4] || doc.Group != "slow" || doc.Reason != "pending" || doc.DryRun {
		t.Errorf("--yes --json = %+v", doc)
	}
	if es := f.c.XRangeN(f.ctx, f.stream, "-", "+", 1).Val(); len(es) != 1 || es[0].ID != ids[4] {
		t.Errorf("first entry after the trim: %v, want %s", es, ids[4])
	}
	r = c.run(t, []string{"trim", "--stream", f.stream + "-missing", "--yes"})
	r.Want(t, 1)
	if !strings.Contains(r.Stderr, "no such stream") {
		t.Errorf("missing stream: stderr %q", r.Stderr)
	}
}
