package reclaim

import (
	"strings"
	"testing"
)

// FuzzXMessage parses entries as a script's reply carries them, {id,
// {field, value, ...}}, from arbitrary lists: odd lengths, values that are
// not strings, a missing or malformed entry. It never panics, and a field
// list yields at most one field per pair.
func FuzzXMessage(f *testing.F) {
	f.Add("1-0", "type\x00t\x00data\x00x", uint8(0))
	f.Add("1-0", "type\x00t\x00odd", uint8(0))
	f.Add("", "", uint8(1))
	f.Add("1-0", "type\x00\xff\x00attempt\x009223372036854775807", uint8(2))
	f.Add("1-0", "a\x00b", uint8(3))
	f.Add("1-0", "a\x00b\x00c\x00d", uint8(4))
	f.Fuzz(func(t *testing.T, id, raw string, shape uint8) {
		var kv []any
		for i, tok := range strings.Split(raw, "\x00") {
			switch {
			case shape&4 != 0 && i%3 == 1:
				kv = append(kv, int64(len(tok))) // a value that is not a string
			case shape&8 != 0 && i%5 == 2:
				kv = append(kv, nil)
			default:
				kv = append(kv, tok)
			}
		}
		var entry any
		switch shape & 3 {
		case 0:
			entry = []any{id, kv}
		case 1:
			entry = []any{id}
		case 2:
			entry = []any{id, kv, "extra"}
		case 3:
			entry = kv
		}
		m, err := xMessage(entry)
		if err != nil {
			return
		}
		if len(m.Values) > len(kv)/2 {
			t.Fatalf("%d fields from a list of %d", len(m.Values), len(kv))
		}
	})
}
