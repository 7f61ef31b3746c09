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

func TestOneProcDefault(t *testing.T) {
	var got []int
	set := func(n int) int { got = append(got, n); return 2 }
	oneProcDefault(func(string) string { return "" }, set)
	oneProcDefault(func(k string) string { return map[string]string{"GOMAXPROCS": "4"}[k] }, set)
	if len(got) != 1 || got[0] != 1 {
		t.Errorf("GOMAXPROCS set to %v; want 1 once: with the variable unset, and left alone with it set", got)
	}
}
