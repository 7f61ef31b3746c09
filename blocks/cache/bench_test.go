package cache

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

func BenchmarkFetchHit(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	c := newCache(b, rdb, nil)
	key := testredis.Prefix(b) + "hot"
	ctx := b.Context()
	load := constant(strings.Repeat("x", 256)).load
	if _, err := c.Fetch(ctx, key, time.Hour, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Fetch(ctx, key, time.Hour, load); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchHitParallel(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	c := newCache(b, rdb, nil)
	key := testredis.Prefix(b) + "hot"
	ctx := b.Context()
	load := constant(strings.Repeat("x", 256)).load
	if _, err := c.Fetch(ctx, key, time.Hour, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Fetch(ctx, key, time.Hour, load); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The baseline: a bare GET of the same value through the same client.
func BenchmarkBareGet(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	key := testredis.Prefix(b) + "hot"
	ctx := b.Context()
	rdb.Set(ctx, key, strings.Repeat("x", 256+headerLen), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if err := rdb.Get(ctx, key).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTypedFetchHit(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	users := NewTyped[user](newCache(b, rdb, nil), nil)
	key := testredis.Prefix(b) + "user"
	ctx := b.Context()
	load := func(context.Context) (user, error) { return user{ID: "1", Name: "Ann"}, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := users.Fetch(ctx, key, time.Hour, load); err != nil {
			b.Fatal(err)
		}
	}
}

// A miss: GET, the lock script, the load, the store script.
func BenchmarkFetchMiss(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	c := newCache(b, rdb, nil)
	p := testredis.Prefix(b)
	ctx := b.Context()
	load := constant("v").load
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Fetch(ctx, fmt.Sprint(p, i), time.Minute, load); err != nil {
			b.Fatal(err)
		}
	}
}
