package main

import (
	"runtime/debug"
	"testing"
)

func TestSetGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	target := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	if setGCDefault(env(nil)); target() != gcPercent {
		t.Errorf("with GOGC and GOMEMLIMIT unset: target %d, want %d", target(), gcPercent)
	}
	for _, vars := range []map[string]string{{"GOGC": "150"}, {"GOMEMLIMIT": "1GiB"}} {
		debug.SetGCPercent(150) // what the runtime made of the variable
		if setGCDefault(env(vars)); target() != 150 {
			t.Errorf("with %v: target %d, want the environment's 150 left alone", vars, target())
		}
	}
}
