package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/streamworker/streamworker/blocks/session"
)

// BenchmarkStore measures the per-request operations of a session: each is
// one round trip.
func BenchmarkStore(b *testing.B) {
	s, _, _ := newStore(b, session.Options{IdleTimeout: time.Hour})
	ctx := context.Background()
	id := session.NewID()
	values := map[string]any{"user_id": 42, "role": "editor", "csrf": "0123456789abcdef", "theme": "dark"}
	if err := s.Save(ctx, id, values); err != nil {
		b.Fatal(err)
	}
	b.Run("Touch", func(b *testing.B) {
		for b.Loop() {
			if err := s.Touch(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, id, "user_id"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetAll", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GetAll(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Update", func(b *testing.B) {
		for b.Loop() {
			if err := s.Update(ctx, id, map[string]any{"theme": "light"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Save", func(b *testing.B) {
		for b.Loop() {
			if err := s.Save(ctx, id, values); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Touch/Parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Touch(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
