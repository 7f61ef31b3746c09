package systems

import "testing"

func TestOrderCheck(t *testing.T) {
	c := newOrderCheck()
	running := map[string]*keyState{}
	steps := []struct {
		begin     bool // else end
		key, id   string
		wantInOrd bool
	}{
		{true, "a", "5-0", true},
		{true, "b", "4-9", true},  // another key: no relation to a
		{true, "a", "5-1", false}, // a still running
		{false, "a", "", false},
		{true, "a", "5-0", false}, // not after the last begun (5-1)
		{false, "a", "", false},
		{true, "a", "6-0", true},
		{false, "a", "", false},
		{true, "a", "10-0", true}, // numeric, not string, order
		{false, "a", "", false},
		{false, "b", "", false},
		{true, "b", "4-10", true},
	}
	for i, s := range steps {
		if !s.begin {
			c.end(running[s.key])
			continue
		}
		k, got := c.begin(s.key, s.id)
		running[s.key] = k
		if got != s.wantInOrd {
			t.Errorf("step %d: begin(%q, %q) = %v, want %v", i, s.key, s.id, got, s.wantInOrd)
		}
	}
}
