package cache

import (
	"context"
	"encoding/json"
	"time"
)

// A Codec turns values into bytes and back for Typed.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the Codec of encoding/json.
type JSON struct{}

// Marshal is json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal is json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Typed is a Cache of values of type T, encoded by a Codec. A cached value
// that no longer decodes into T — written by an older version of T, say —
// is a miss for Fetch, which loads and stores it again, instead of an
// error until its TTL.
type Typed[T any] struct {
	cache *Cache
	codec Codec
}

// NewTyped returns a Typed on c; a nil codec is JSON.
func NewTyped[T any](c *Cache, codec Codec) *Typed[T] {
	if codec == nil {
		codec = JSON{}
	}
	return &Typed[T]{cache: c, codec: codec}
}

// Cache is the untyped Cache underneath, for Delete, Write and Close.
func (t *Typed[T]) Cache() *Cache { return t.cache }

// Get is Cache.Get, decoded.
func (t *Typed[T]) Get(ctx context.Context, key string) (T, error) {
	var v T
	b, err := t.cache.Get(ctx, key)
	if err != nil {
		return v, err
	}
	err = t.codec.Unmarshal(b, &v)
	return v, err
}

// Set is Cache.Set, encoded.
func (t *Typed[T]) Set(ctx context.Context, key string, v T, ttl time.Duration) error {
	b, err := t.codec.Marshal(v)
	if err != nil {
		return err
	}
	return t.cache.Set(ctx, key, b, ttl)
}

// Fetch is Cache.Fetch, typed: load returns a T, or ErrNotFound.
func (t *Typed[T]) Fetch(ctx context.Context, key string, ttl time.Duration, load func(ctx context.Context) (T, error)) (T, error) {
	loadBytes := func(ctx context.Context) ([]byte, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		return t.codec.Marshal(v)
	}
	var v T
	b, err := t.cache.Fetch(ctx, key, ttl, loadBytes)
	if err != nil {
		return v, err
	}
	err = t.codec.Unmarshal(b, &v)
	if err == nil {
		return v, nil
	}
	t.cache.log.WarnContext(ctx, "cached value does not decode; loading it again", "key", key, "error", err)
	// Once, not in a loop: if the fresh value does not decode either, the
	// codec is broken and the error says so.
	if err := t.cache.Delete(ctx, key); err != nil {
		return v, err
	}
	if b, err = t.cache.Fetch(ctx, key, ttl, loadBytes); err != nil {
		return v, err
	}
	v = *new(T)
	err = t.codec.Unmarshal(b, &v)
	return v, err
}
