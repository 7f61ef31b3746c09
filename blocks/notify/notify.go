// Package notify owns pub/sub fan-out of JSON events: Publish sends an
// event to every process subscribed to its channel right now; Subscribe and
// PSubscribe run a handler for each event on channels or patterns until the
// context ends, resubscribing by themselves after a connection loss. With
// Options.Sharded it uses sharded pub/sub (SPUBLISH/SSUBSCRIBE), which on
// Redis Cluster keeps a channel's traffic within the shard that owns it.
//
// Pub/sub is at-most-once. An event published while a subscriber is
// disconnected — Redis restarting, a network blip, the gap between a
// connection loss and the resubscribe, a subscriber too slow for Redis's
// output buffer limit — is gone for that subscriber, and nothing says so.
// Use it for signals that can be lost (cache invalidation, live updates, "go
// and look"); work that must happen belongs on a stream. Options.OnSubscribe
// is told when a subscription is re-established, so a subscriber can reload
// what it derives from the events it may have missed.
//
// The traps it avoids: a payload that does not decode, or a handler that
// fails or panics, ending the subscription (each is logged and counted in
// Stats, and the next event is handled); a subscription that dies with its
// connection and is never renewed, or a half-open connection that looks
// alive for ever (silent subscriptions are pinged); goroutines that outlive
// the caller (Subscribe returns when its context ends, after closing its
// connection); SSUBSCRIBE of channels in several slots (refused on Cluster:
// they are split into one subscription per slot).
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrShardedPatterns is returned by PSubscribe on a sharded Notifier:
// Redis has no sharded pattern subscription.
var ErrShardedPatterns = errors.New("notify: pattern subscriptions are not available with sharded pub/sub")

// Options configure a Notifier.
type Options struct {
	// Sharded uses SPUBLISH and SSUBSCRIBE (Redis 7+). On Cluster a sharded
	// message travels only within the shard owning its channel's slot
	// instead of being broadcast to every node; use it there. Publishers
	// and subscribers of a channel must agree: SUBSCRIBE does not see
	// SPUBLISH. Default: false
	Sharded bool
	// Logger receives decode errors, handler errors and lost
	// subscriptions. Default: discard
	Logger *slog.Logger
	// HealthCheck is how long a subscription may stay silent before it is
	// pinged; no answer within another HealthCheck counts as a lost
	// connection. Default: 5s
	HealthCheck time.Duration
	// OnSubscribe, when set, is called each time a subscription is
	// confirmed by the server, before any of its events is handled, with
	// its channels (or patterns) and whether it is a resubscription after
	// a loss — when events may have been missed. It runs on the
	// subscription's goroutine.
	OnSubscribe func(channels []string, resubscribed bool)
}

// Notifier publishes and subscribes. It is safe for concurrent use; one
// Notifier can run many subscriptions.
type Notifier struct {
	rdb         redis.UniversalClient
	sharded     bool
	logger      *slog.Logger
	healthCheck time.Duration
	onSubscribe func([]string, bool)

	received, decodeErrors, handlerErrors, lost, resubscribed atomic.Uint64
}

// New returns a Notifier on rdb. opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Notifier {
	var o Options
	if opt != nil {
		o = *opt
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HealthCheck <= 0 {
		o.HealthCheck = 5 * time.Second
	}
	return &Notifier{
		rdb: rdb, sharded: o.Sharded, logger: o.Logger.With("component", "notify"),
		healthCheck: o.HealthCheck, onSubscribe: o.OnSubscribe,
	}
}

// Publish sends event, encoded with encoding/json, to channel and returns
// how many subscribers received it (on Cluster without Sharded, those
// connected to the node that took the PUBLISH). Pass a json.RawMessage to
// send JSON that is already encoded; a []byte would be encoded as base64.
func (n *Notifier) Publish(ctx context.Context, channel string, event any) (int64, error) {
	b, err := json.Marshal(event)
	if err != nil {
		return 0, fmt.Errorf("notify: encoding event for %q: %w", channel, err)
	}
	var cmd *redis.IntCmd
	if n.sharded {
		cmd = n.rdb.SPublish(ctx, channel, b)
	} else {
		cmd = n.rdb.Publish(ctx, channel, b)
	}
	if err := cmd.Err(); err != nil {
		return 0, fmt.Errorf("notify: publishing to %q: %w", channel, err)
	}
	return cmd.Val(), nil
}

// Notification is one event received.
type Notification struct {
	// Channel is the channel it was published to.
	Channel string
	// Pattern is the pattern it matched, for PSubscribe; empty otherwise.
	Pattern string
	// Payload is the event as published: JSON from Publish.
	Payload []byte
}

// Decode decodes the payload into v with encoding/json. Its error is a
// *DecodeError, which the Notifier counts as a decode error.
func (m *Notification) Decode(v any) error {
	if err := json.Unmarshal(m.Payload, v); err != nil {
		return &DecodeError{Channel: m.Channel, Err: err}
	}
	return nil
}

// DecodeError is a payload that does not decode. A handler returning one
// (or wrapping one) is counted in Stats.DecodeErrors, not HandlerErrors.
type DecodeError struct {
	Channel string
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding notification on %q: %v", e.Channel, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Handler handles one notification. Its error is logged and counted, never
// fatal to the subscription.
type Handler interface {
	HandleNotification(ctx context.Context, m *Notification) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Notification) error

// HandleNotification calls f(ctx, m).
func (f HandlerFunc) HandleNotification(ctx context.Context, m *Notification) error { return f(ctx, m) }

// JSON returns a Handler that decodes each payload into a T and calls f
// with it; a payload that does not decode is counted and logged as a
// decode error and f is not called.
func JSON[T any](f func(ctx context.Context, m *Notification, event T) error) Handler {
	return HandlerFunc(func(ctx context.Context, m *Notification) error {
		var v T
		if err := m.Decode(&v); err != nil {
			return err
		}
		return f(ctx, m, v)
	})
}

// Stats are a Notifier's counters since it was created.
type Stats struct {
	// Received counts notifications handed to handlers.
	Received uint64
	// DecodeErrors counts notifications dropped because their payload did
	// not decode.
	DecodeErrors uint64
	// HandlerErrors counts handler errors and panics.
	HandlerErrors uint64
	// Lost counts subscriptions lost: connection errors, unanswered pings,
	// the server ending a subscription.
	Lost uint64
	// Resubscribed counts subscriptions re-established after a loss.
	Resubscribed uint64
}

// Stats returns the counters.
func (n *Notifier) Stats() Stats {
	return Stats{
		Received: n.received.Load(), DecodeErrors: n.decodeErrors.Load(), HandlerErrors: n.handlerErrors.Load(),
		Lost: n.lost.Load(), Resubscribed: n.resubscribed.Load(),
	}
}

// Subscribe runs h for every event published to channels until ctx ends,
// then returns nil. Events are handled one at a time per subscription, in
// the order they arrive; a slow handler delays the rest, and one too slow
// for long gets the connection closed by Redis (client-output-buffer-limit
// pubsub), which counts as a loss. It returns an error only for a
// subscription Redis refuses outright (no permission, unknown command).
func (n *Notifier) Subscribe(ctx context.Context, h Handler, channels ...string) error {
	if len(channels) == 0 {
		return errors.New("notify: Subscribe needs at least one channel")
	}
	kind := kindChannels
	if n.sharded {
		kind = kindSharded
	}
	return n.subscribe(ctx, h, kind, channels)
}

// PSubscribe is Subscribe for glob-style patterns (news.*); a
// Notification's Pattern says which one matched. It is not available with
// sharded pub/sub.
func (n *Notifier) PSubscribe(ctx context.Context, h Handler, patterns ...string) error {
	if n.sharded {
		return ErrShardedPatterns
	}
	if len(patterns) == 0 {
		return errors.New("notify: PSubscribe needs at least one pattern")
	}
	return n.subscribe(ctx, h, kindPatterns, patterns)
}

type kind int

const (
	kindChannels kind = iota
	kindPatterns
	kindSharded
)

func (n *Notifier) subscribe(ctx context.Context, h Handler, k kind, names []string) error {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	groups := [][]string{names}
	if k == kindSharded {
		groups = bySlot(names)
	}
	if len(groups) == 1 {
		return n.run(ctx, h, k, names)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, g := range groups {
		wg.Go(func() {
			if err := n.run(ctx, h, k, g); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	return first
}

// run keeps one subscription alive until ctx ends.
func (n *Notifier) run(ctx context.Context, h Handler, k kind, names []string) error {
	log := n.logger.With("channels", names)
	failures := 0
	for lost := 0; ; lost++ {
		subscribed, err := n.session(ctx, h, k, names, lost > 0)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // the error is the shutdown closing the connection
		}
		if refused(err) {
			return fmt.Errorf("notify: subscribing to %q: %w", names, err)
		}
		if subscribed {
			failures = 0
		}
		wait := backoff(failures)
		failures++
		n.lost.Add(1)
		log.Warn("subscription lost; resubscribing: events published until then are missed",
			"error", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session runs one subscription on one connection until the connection is
// lost (the error says how) or ctx ends (nil). subscribed reports whether
// the server confirmed the subscription.
func (n *Notifier) session(ctx context.Context, h Handler, k kind, names []string, resumed bool) (subscribed bool, err error) {
	var ps *redis.PubSub
	switch k {
	case kindPatterns:
		ps = n.rdb.PSubscribe(ctx, names...)
	case kindSharded:
		ps = n.rdb.SSubscribe(ctx, names...)
	default:
		ps = n.rdb.Subscribe(ctx, names...)
	}
	defer ps.Close()
	// Closing the connection is what interrupts a blocked read.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	confirmed, pinged := 0, false
	for {
		msg, err := ps.ReceiveTimeout(ctx, n.healthCheck)
		if ctx.Err() != nil {
			return subscribed, nil
		}
		if err != nil {
			if !isTimeout(err) {
				return subscribed, err
			}
			if pinged {
				return subscribed, fmt.Errorf("no answer to a ping within %s", n.healthCheck)
			}
			if err := ps.Ping(ctx); err != nil {
				return subscribed, err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "psubscribe", "ssubscribe":
				if confirmed++; confirmed == len(names) {
					subscribed = true
					if resumed {
						n.resubscribed.Add(1)
						n.logger.Info("resubscribed", "channels", names)
					}
					if n.onSubscribe != nil {
						n.onSubscribe(slices.Clone(names), resumed)
					}
				}
			default:
				// The server ended it: on Cluster, the channel's slot moved
				// to another node (sunsubscribe).
				return subscribed, fmt.Errorf("the server ended the subscription to %q (%s)", m.Channel, m.Kind)
			}
		case *redis.Message:
			n.dispatch(ctx, h, m)
		}
	}
}

func (n *Notifier) dispatch(ctx context.Context, h Handler, msg *redis.Message) {
	n.received.Add(1)
	m := &Notification{Channel: msg.Channel, Pattern: msg.Pattern, Payload: []byte(msg.Payload)}
	err := call(ctx, h, m)
	if err == nil {
		return
	}
	var de *DecodeError
	if errors.As(err, &de) {
		n.decodeErrors.Add(1)
		n.logger.Warn("notification dropped: its payload does not decode", "channel", m.Channel, "bytes", len(m.Payload), "error", err)
		return
	}
	n.handlerErrors.Add(1)
	n.logger.Error("notification handler failed", "channel", m.Channel, "error", err)
}

// call runs h, turning a panic into an error.
func call(ctx context.Context, h Handler, m *Notification) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	return h.HandleNotification(ctx, m)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// refused reports an error reply that resubscribing cannot fix: no
// permission for the channel, or a server without the command (SSUBSCRIBE
// before Redis 7). Anything else — connection errors, Cluster redirections,
// CLUSTERDOWN, LOADING, too many clients — is retried.
func refused(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "ERR unknown command")
}

// backoff is the wait before resubscribing after the given number of
// failures in a row: 100ms doubling to 5s, with up to 20% jitter.
func backoff(failures int) time.Duration {
	d := min(100*time.Millisecond<<min(failures, 6), 5*time.Second)
	return d + rand.N(d/5)
}
