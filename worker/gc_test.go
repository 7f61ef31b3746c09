package worker

import (
	"runtime/debug"
	"testing"
)

func TestSetGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	if got := SetGCDefault(env(nil)); got != DefaultGCPercent || gcPercent() != DefaultGCPercent {
		t.Errorf("with GOGC and GOMEMLIMIT unset: SetGCDefault = %d, target %d; want %d", got, gcPercent(), DefaultGCPercent)
	}
	for _, vars := range []map[string]string{{"GOGC": "150"}, {"GOMEMLIMIT": "1GiB"}} {
		debug.SetGCPercent(150) // what the runtime made of the variable
		if got := SetGCDefault(env(vars)); got != 150 || gcPercent() != 150 {
			t.Errorf("with %v: SetGCDefault = %d, target %d; want the environment's 150 left alone", vars, got, gcPercent())
		}
	}
}
