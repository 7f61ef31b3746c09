package session_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/session"
	"github.com/streamworker/streamworker/internal/testredis"
)

func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	sessions := session.New(rdb, &session.Options{
		Prefix:      "session:" + testredis.RandomID() + ":",
		IdleTimeout: 30 * time.Minute, // every access starts this again
		MaxLifetime: 12 * time.Hour,   // however active the session is
	})
	ctx := context.Background()

	id := session.NewID()
	if err := sessions.Save(ctx, id, map[string]any{"user_id": 42, "role": "editor"}); err != nil {
		panic(err)
	}
	_ = sessions.Update(ctx, id, map[string]any{"theme": "dark"})

	role, _ := sessions.Get(ctx, id, "role")
	fmt.Println("role:", role)
	all, _ := sessions.GetAll(ctx, id)
	fmt.Println("fields:", all)

	_ = sessions.Delete(ctx, id)
	_, err := sessions.GetAll(ctx, id)
	fmt.Println("after delete:", errors.Is(err, session.ErrNotFound))
	// An update cannot bring a deleted session back.
	err = sessions.Update(ctx, id, map[string]any{"theme": "light"})
	fmt.Println("update after delete:", errors.Is(err, session.ErrNotFound))
	// Output:
	// role: editor
	// fields: map[role:editor theme:dark user_id:42]
	// after delete: true
	// update after delete: true
}
