package keys_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/blocks/keys"
)

func TestJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		parts   []string
		want    string
		wantErr string // a substring of the error; "" for success
	}{
		{name: "Plain", parts: []string{"user", "42", "profile"}, want: "user:42:profile"},
		{name: "One", parts: []string{"counter"}, want: "counter"},
		{name: "Tag", parts: []string{"account", keys.Tag("42"), "balance"}, want: "account:{42}:balance"},
		{name: "EscapedUntrusted", parts: []string{"user", keys.Escape("a:b{c}"), "x"}, want: "user:a%3Ab%7Bc%7D:x"},
		{name: "TagEscapes", parts: []string{keys.Tag("a:{b}")}, want: "{a%3A%7Bb%7D}"},
		{name: "NoParts", wantErr: "no parts"},
		{name: "Empty", parts: []string{"user", "", "x"}, wantErr: `part 1 "": empty`},
		{name: "Separator", parts: []string{"user", "7:admin"}, wantErr: `part 1 "7:admin": holds the separator ":"`},
		{name: "BraceInside", parts: []string{"user", "a{b}c"}, wantErr: "brace outside a hash tag"},
		{name: "OpenBrace", parts: []string{"user", "{ab"}, wantErr: "brace outside a hash tag"},
		{name: "NestedTag", parts: []string{"{a{b}}"}, wantErr: "brace outside a hash tag"},
		{name: "EmptyTag", parts: []string{"user", keys.Tag("")}, wantErr: "empty hash tag"},
		{name: "TwoTags", parts: []string{keys.Tag("a"), keys.Tag("b")}, wantErr: "a second hash tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := keys.Join(tt.parts...)
			if tt.wantErr != "" {
				if !errors.Is(err, keys.ErrInvalidPart) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Join(%q) = %q, %v; want an ErrInvalidPart containing %q", tt.parts, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Join(%q) = %q, %v; want %q", tt.parts, got, err, tt.want)
			}
		})
	}
}

func TestMustJoinPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("MustJoin with a separator in a part did not panic")
		}
	}()
	keys.MustJoin("a", "b:c")
}

func TestEscapeRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab:{}%\x00\xff")
	for range 2000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		s := string(b)
		e := keys.Escape(s)
		if strings.ContainsAny(e, ":{}") {
			t.Fatalf("Escape(%q) = %q still holds a separator or brace", s, e)
		}
		got, err := keys.Unescape(e)
		if err != nil || got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
	}
}

func TestUnescapeBad(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"%", "%4", "a%zz", "%3"} {
		if got, err := keys.Unescape(s); err == nil {
			t.Errorf("Unescape(%q) = %q, nil; want an error", s, got)
		}
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	key := keys.MustJoin("user", keys.Tag("a:b"), keys.Escape("x{y}%"), "cart")
	got, err := keys.Split(key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"user", "a:b", "x{y}%", "cart"}, got); diff != "" {
		t.Errorf("Split(%q) (-want +got):\n%s", key, diff)
	}
	if _, err := keys.Split("a:%zz"); err == nil {
		t.Error("Split of a bad escape: no error")
	}
}

func TestHashTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, tag string
		ok       bool
	}{
		{"user:{42}:cart", "42", true},
		{"{a}{b}", "a", true},
		{"a{}b", "", false},
		{"a{b", "", false},
		{"a}b{c}", "c", true},
		{"{}{x}", "", false},
		{"plain", "", false},
	}
	for _, tt := range tests {
		tag, ok := keys.HashTag(tt.key)
		if tag != tt.tag || ok != tt.ok {
			t.Errorf("HashTag(%q) = %q, %v; want %q, %v", tt.key, tag, ok, tt.tag, tt.ok)
		}
	}
}

func TestSameSlot(t *testing.T) {
	t.Parallel()
	a := keys.MustJoin("account", keys.Tag("game"), "alice")
	b := keys.MustJoin("account", keys.Tag("game"), "bob")
	if err := keys.SameSlot(a, b); err != nil {
		t.Errorf("SameSlot(%q, %q) = %v", a, b, err)
	}
	if err := keys.SameSlot("account:alice", "account:bob"); !errors.Is(err, keys.ErrCrossSlot) {
		t.Errorf("SameSlot of untagged keys = %v; want ErrCrossSlot", err)
	}
	if err := keys.SameSlot(); err != nil {
		t.Errorf("SameSlot() = %v", err)
	}
}

// randomKeys covers the shapes hash-tag parsing has edge cases for.
func randomKeys(r *rand.Rand, n int) []string {
	alphabet := []byte("ab:{}x")
	out := []string{"", "{}", "}", "{", "a{}b", "}{", "{}{a}", "foo", "bar", "{user1000}.following"}
	for len(out) < n {
		b := make([]byte, 1+r.IntN(10))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		out = append(out, string(b))
	}
	return out
}

// Slot must agree with the server's own CLUSTER KEYSLOT, and Sibling must
// stay in the slot of its key, on every shape of key.
func TestSlotMatchesServer(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := t.Context()
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range randomKeys(r, 400) {
		want, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keys.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d; CLUSTER KEYSLOT says %d", k, got, want)
		}
		sib := keys.Sibling(k, "lock")
		if got, _ := cc.ClusterKeySlot(ctx, sib).Result(); got != want {
			t.Errorf("Sibling(%q) = %q is in slot %d; want %d", k, sib, got, want)
		}
		// The server agrees the pair can be used in one command.
		if err := cc.MGet(ctx, k, sib).Err(); err != nil {
			t.Errorf("MGET %q %q: %v", k, sib, err)
		}
	}
}

func TestSibling(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"user:{42}:cart", "user:{42}:cart:lock"},
		{"report:7", "{report:7}:lock"},
		{"a{b", "{a{b}:lock"},
	}
	for _, tt := range tests {
		if got := keys.Sibling(tt.key, "lock"); got != tt.want {
			t.Errorf("Sibling(%q, lock) = %q; want %q", tt.key, got, tt.want)
		}
	}
	for _, k := range []string{"", "}", "a{}b", "{}"} {
		if got := keys.Sibling(k, "lock"); keys.Slot(got) != keys.Slot(k) || !strings.HasSuffix(got, k+":lock") {
			t.Errorf("Sibling(%q, lock) = %q: slot %d, want %d", k, got, keys.Slot(got), keys.Slot(k))
		}
	}
}

func BenchmarkJoin(b *testing.B) {
	for b.Loop() {
		_, _ = keys.Join("account", "{game-42}", "balance")
	}
}

func BenchmarkSlot(b *testing.B) {
	for b.Loop() {
		_ = keys.Slot("account:{game-42}:balance")
	}
}
