package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedCurrent: scripts_gen.go holds exactly the scripts of the
// packages cmd/worker and cmd/streamctl build from. A script added, changed
// or removed there without regenerating would be missing from the function
// libraries, and REDIS_SCRIPTS=functions would fail it at every call.
func TestGeneratedCurrent(t *testing.T) {
	want, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../scripts_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("internal/scriptfn/scripts_gen.go is stale: a redis.NewScript source changed, or one was added or removed, in the packages of %v.\n"+
			"Regenerate it and commit the result:\n\n\tgo generate ./internal/scriptfn    (or: make generate)\n\n"+
			"then load the new libraries where REDIS_SCRIPTS=functions runs: streamctl scripts load", roots)
	}
}
