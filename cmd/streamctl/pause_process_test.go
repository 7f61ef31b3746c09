package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/wire"
)

func testPauseResume(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.add(f.stream, "type", "a")
	f.group("workers")
	f.group("audit")

	r := c.run(t, []string{"pause", "--stream", f.stream, "--group", "workers"})
	r.Want(t, 0)
	if r.Stdout != f.stream+" paused for group workers\n" {
		t.Errorf("pause stdout = %q", r.Stdout)
	}
	if v := f.c.HGet(f.ctx, wire.PausedKey(f.stream), "workers").Val(); v == "" {
		t.Errorf("%s has no field workers after pause", wire.PausedKey(f.stream))
	}
	r = c.run(t, []string{"pause", "--stream", f.stream, "--group", "workers"})
	r.Want(t, 0)
	if r.Stdout != f.stream+" was already paused for group workers\n" {
		t.Errorf("second pause stdout = %q", r.Stdout)
	}

	r = c.run(t, []string{"status", "--stream", f.stream})
	r.Want(t, 0)
	if !strings.Contains(r.Stdout, "PAUSED") || !strings.Contains(r.Stdout, "workers (") {
		t.Errorf("status does not show the pause:\n%s", r.Stdout)
	}
	var groupLines []string
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.Contains(l, "audit") || strings.Contains(l, " workers ") && !strings.Contains(l, "(") {
			groupLines = append(groupLines, l)
		}
	}
	if len(groupLines) != 2 || strings.HasSuffix(groupLines[0], "paused") || !strings.HasSuffix(groupLines[1], "paused") {
		t.Errorf("group rows %q: want workers paused, audit not", groupLines)
	}

	r = c.run(t, []string{"status", "--stream", f.stream, "--json"})
	r.Want(t, 0)
	var doc statusDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Streams[0]
	if len(s.Paused) != 1 || s.Paused[0].Group != "workers" || s.Paused[0].SinceMS == nil || s.Groups[0].Paused || !s.Groups[1].Paused {
		t.Errorf("status --json: %s", r.Stdout)
	}

	r = c.run(t, []string{"pause", "--stream", f.stream, "--json"})
	r.Want(t, 0)
	var pd pausesDoc
	if err := json.Unmarshal([]byte(r.Stdout), &pd); err != nil {
		t.Fatal(err)
	}
	if pd.Stream != f.stream || len(pd.Paused) != 2 || pd.Paused[0].Group != "*" || pd.Paused[1].Group != "workers" {
		t.Errorf("pause --json = %s", r.Stdout)
	}

	r = c.run(t, []string{"resume", "--stream", f.stream, "--group", "workers"})
	r.Want(t, 0)
	if r.Stdout != f.stream+" resumed for group workers\n" || !strings.Contains(r.Stderr, "still paused for every group") {
		t.Errorf("resume of a group under a pause of all: stdout %q, stderr %q", r.Stdout, r.Stderr)
	}
	r = c.run(t, []string{"resume", "--stream", f.stream, "--json"})
	r.Want(t, 0)
	if strings.TrimSpace(r.Stdout) != `{
  "stream": "`+f.stream+`",
  "paused": []
}` {
		t.Errorf("resume --json = %s", r.Stdout)
	}
	r = c.run(t, []string{"resume", "--stream", f.stream})
	r.Want(t, 0)
	if r.Stdout != f.stream+" was not paused for every group\n" {
		t.Errorf("resume of a stream not paused: %q", r.Stdout)
	}
	if n := f.c.Exists(f.ctx, wire.PausedKey(f.stream)).Val(); n != 0 {
		t.Errorf("the pause key is left after resume")
	}
	r = c.run(t, []string{"status", "--stream", f.stream})
	r.Want(t, 0)
	if strings.Contains(r.Stdout, "PAUSED") {
		t.Errorf("status shows a pause after resume:\n%s", r.Stdout)
	}
}
