package handlertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/worker"
)

// Likes is a plugin: a struct holding its dependencies, with a Register
// method that puts its handler on a mux. No init(), no globals.
type Likes struct {
	rdb    redis.UniversalClient
	prefix string
}

// Like is the payload of a post.liked message.
type Like struct {
	Post string `json:"post"`
	User string `json:"user"`
}

// Register registers post.liked on mux.
func (l *Likes) Register(mux *worker.Mux) {
	mux.HandleFunc("post.liked", func(ctx context.Context, m *worker.Message) error {
		var like Like
		if err := json.Unmarshal(m.Data, &like); err != nil || like.Post == "" || like.User == "" {
			// Retrying cannot fix a bad payload: dead-letter it at once.
			return worker.Permanent(errors.Join(errors.New("bad like"), err))
		}
		// SADD is idempotent, so a redelivered message counts once.
		key := l.prefix + keys.MustJoin("post", keys.Tag(keys.Escape(like.Post)), "likes")
		return l.rdb.SAdd(ctx, key, like.User).Err() // an error is retried with backoff
	})
}

// TestLikes is the plugin's end-to-end test: the handler runs in the real
// runtime on a real Redis, and the test asserts on what the runtime did with
// each message.
func TestLikes(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t) // a real Redis, a stream and key prefix of this test's own
	likes := &Likes{rdb: h.Redis, prefix: h.Prefix}
	mux := worker.NewMux()
	likes.Register(mux)
	h.Start(mux) // worker.Run, the real runtime, until the test ends

	h.Acked(h.Send("post.liked", Like{Post: "p1", User: "ada"}))
	h.Acked(h.Send("post.liked", Like{Post: "p1", User: "ada"})) // redelivered: counted once
	r := h.DeadLettered(h.Send("post.liked", `{"post":"p1"}`))   // no user
	if r.Retries != 0 {
		t.Errorf("a bad like was retried %d times", r.Retries)
	}
	if n := h.Redis.SCard(context.Background(), h.Prefix+"post:{p1}:likes").Val(); n != 1 {
		t.Errorf("likes = %d, want 1", n)
	}
}

// A worker binary registers the plugin with the runtime's Redis client,
// which WithSetup hands over once it is connected.
func Example() {
	mux := worker.NewMux()
	setup := worker.WithSetup(func(ctx context.Context, d worker.Deps) error {
		(&Likes{rdb: d.Redis}).Register(mux)
		return nil
	})
	_ = setup                // worker.Main(mux, setup) in func main
	(&Likes{}).Register(mux) // here without Redis, to show the route
	fmt.Println(mux.Types())
	// Output: [post.liked]
}
