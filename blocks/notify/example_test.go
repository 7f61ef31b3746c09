package notify_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/internal/testredis"
)

type priceChanged struct {
	SKU   string `json:"sku"`
	Cents int    `json:"cents"`
}

// Subscribe runs until its context ends; JSON decodes each event for the
// handler. Events published before the subscription is confirmed are not
// seen, so this one publishes from OnSubscribe.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	channel := testredis.RandomID() + ":prices"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pub := notify.New(rdb, nil)
	sub := notify.New(rdb, &notify.Options{
		OnSubscribe: func(channels []string, resubscribed bool) {
			fmt.Println("subscribed; resubscription:", resubscribed)
			go func() {
				_, _ = pub.Publish(ctx, channel, priceChanged{SKU: "tea-01", Cents: 450})
				_, _ = pub.Publish(ctx, channel, json.RawMessage(`["not", "a", "price"]`))
				_, _ = pub.Publish(ctx, channel, priceChanged{SKU: "tea-02", Cents: 980})
			}()
		},
	})

	seen := 0
	err := sub.Subscribe(ctx, notify.JSON(func(ctx context.Context, m *notify.Notification, e priceChanged) error {
		fmt.Printf("%s now costs %d cents\n", e.SKU, e.Cents)
		if seen++; seen == 2 {
			cancel() // shuts the subscription down
		}
		return nil
	}), channel)

	fmt.Println("Subscribe returned", err)
	fmt.Printf("%+v\n", sub.Stats())
	// Output:
	// subscribed; resubscription: false
	// tea-01 now costs 450 cents
	// tea-02 now costs 980 cents
	// Subscribe returned <nil>
	// {Received:3 DecodeErrors:1 HandlerErrors:0 Lost:0 Resubscribed:0}
}
