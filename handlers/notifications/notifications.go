// Package notifications is the built-in notification.requested plugin: it
// fans each notification out on pub/sub to notifications:<user>, rate
// limited per user with a sliding window. A notification over its user's
// limit is delayed (rescheduled with worker.Delay for when the window has
// room), not dropped and not failed.
//
// Keys: <prefix>ratelimit:notifications:<user> (package ratelimit);
// channel <prefix>notifications:<user>.
package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/handlers/ratelimitmw"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type the plugin handles.
const Type = "notification.requested"

// Request is the payload of a notification.requested message, and what
// subscribers of notifications:<user> receive.
type Request struct {
	User  string `json:"user"`
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

// Options configure Notifications.
type Options struct {
	// Prefix is put in front of every key and channel. Default: ""
	Prefix string
	// Limit is each user's limit. Default: 5 per second
	Limit ratelimit.Limit
	// Notifier publishes. Default: notify.New(rdb, nil)
	Notifier *notify.Notifier
}

// Notifications handles notification.requested.
type Notifications struct {
	rdb redis.UniversalClient
	opt Options
}

// New returns Notifications on rdb; opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Notifications {
	n := &Notifications{rdb: rdb}
	if opt != nil {
		n.opt = *opt
	}
	if n.opt.Limit.Rate == 0 {
		n.opt.Limit = ratelimit.PerSecond(5)
	}
	if n.opt.Notifier == nil {
		n.opt.Notifier = notify.New(rdb, nil)
	}
	return n
}

// Channel is the channel user's notifications are published on.
func (n *Notifications) Channel(user string) string { return n.opt.Prefix + "notifications:" + user }

// Register registers the notification.requested handler, behind its rate
// limit, on mux.
func (n *Notifications) Register(mux *worker.Mux) {
	limiter := ratelimit.NewSlidingWindow(n.rdb, &ratelimit.Options{Prefix: n.opt.Prefix + "ratelimit:"})
	limited := ratelimitmw.New(limiter, n.opt.Limit, &ratelimitmw.Options{Key: func(m *worker.Message) string {
		var r Request
		_ = json.Unmarshal(m.Data, &r) // a bad payload is refused by the handler
		return "notifications:" + r.User
	}})
	mux.Handle(Type, limited(worker.HandlerFunc(n.handle)))
}

func (n *Notifications) handle(ctx context.Context, m *worker.Message) error {
	var r Request
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return worker.Permanent(fmt.Errorf("decoding notification: %w", err))
	}
	if r.User == "" || r.Title == "" {
		return worker.Permanent(errors.New("a notification needs a user and a title"))
	}
	// Pub/sub is at-most-once: a user with no subscriber now gets nothing,
	// which is fine for a live notification; a failed PUBLISH is retried.
	if _, err := n.opt.Notifier.Publish(ctx, n.Channel(r.User), r); err != nil {
		return fmt.Errorf("publishing notification: %w", err)
	}
	return nil
}
