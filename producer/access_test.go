package producer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// refusingRedis starts a Redis of the test's own that refuses a producer in
// the ways a wrong connection setting does: the default user has a password
// (requirepass), the user off is disabled, nosel may not SELECT and nokey
// may touch no key of the test's. It returns the server, its password and a
// client of the default user.
func refusingRedis(t *testing.T) (*testredis.Server, string, *redis.Client) {
	t.Helper()
	srv := testredis.Start(t)
	ctx := context.Background()
	setup := srv.Client(t)
	for _, rule := range [][]any{
		{"ACL", "SETUSER", "off", "off", ">pw", "~*", "+@all"},
		{"ACL", "SETUSER", "nosel", "on", ">pw", "~*", "+@all", "-select"},
		{"ACL", "SETUSER", "nokey", "on", ">pw", "~other:*", "+@all"},
	} {
		if err := setup.Do(ctx, rule...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pass := "pw-" + testredis.RandomID()
	// The connection that sets the password stays authenticated; every
	// later one must give it.
	if err := setup.ConfigSet(ctx, "requirepass", pass).Err(); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: pass})
	t.Cleanup(func() { _ = admin.Close() })
	return srv, pass, admin
}

// Every publish path surfaces a write Redis refused for the connection's
// sake, names the cause and what to check, and reports no write as done;
// go-redis leaves the commands of a pipeline without an error when the
// connection's handshake (AUTH, HELLO, SELECT) fails.
func TestPublishRefusedConnection(t *testing.T) {
	t.Parallel()
	srv, pass, admin := refusingRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		url    string
		reason error
		says   []string
	}{
		{"WrongPassword", "redis://:wrong@" + srv.Addr + "/0", ErrAuth, []string{"authentication failed", "check the user name and password in the Redis URL", "WRONGPASS"}},
		{"NoPassword", "redis://" + srv.Addr + "/0", ErrAuth, []string{"authentication failed", "NOAUTH"}},
		{"DisabledUser", "redis://off:pw@" + srv.Addr + "/0", ErrAuth, []string{"authentication failed", "that the user is enabled", "WRONGPASS"}},
		{"DatabaseOutOfRange", "redis://:" + pass + "@" + srv.Addr + "/99", ErrDatabase, []string{"database index out of range", "check the database number at the end of the Redis URL", "DB index is out of range"}},
		{"NoPermissionToSelect", "redis://nosel:pw@" + srv.Addr + "/1", ErrNoPermission, []string{"permission denied for the user", "ACL rules", "NOPERM"}},
		{"NoPermissionForKey", "redis://nokey:pw@" + srv.Addr + "/0", ErrNoPermission, []string{"permission denied for the user", "NOPERM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewClient(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			check := func(t *testing.T, what string, err error) {
				t.Helper()
				if !errors.Is(err, tc.reason) {
					t.Errorf("%s: err = %v, want %v", what, err, tc.reason)
					return
				}
				var aerr *AccessError
				if !errors.As(err, &aerr) || !errors.Is(aerr.Reason, tc.reason) {
					t.Errorf("%s: err = %#v, want an *AccessError", what, err)
				}
				var rerr redis.Error
				if !errors.As(err, &rerr) {
					t.Errorf("%s: err = %v does not wrap Redis's error", what, err)
				}
				for _, s := range tc.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: err = %q, does not say %q", what, err, s)
					}
				}
				if strings.Contains(err.Error(), pass) {
					t.Errorf("%s: err = %q shows the password", what, err)
				}
			}
			for _, partitions := range []int{0, 3} {
				p := New(c, Options{Partitions: partitions})
				stream := testredis.Prefix(t) + "s"
				due := time.Now().Add(time.Hour)

				id, err := p.Publish(ctx, stream, Event{Type: "t"})
				check(t, "Publish", err)
				if id != "" {
					t.Errorf("Publish returned ID %q", id)
				}

				check(t, "PublishDelayed", p.PublishDelayed(ctx, stream, Event{Type: "t"}, due))

				ids, err := p.PublishBatch(ctx, stream, []Event{{Type: "a"}, {Type: "b", Key: "k"}, {Type: "c"}})
				check(t, "PublishBatch", err)
				var berr *BatchError
				if !errors.As(err, &berr) || berr.Failed != 3 || berr.Total != 3 || berr.First != 0 {
					t.Errorf("PublishBatch: err = %v, want a BatchError of 3 of 3", err)
				}
				if len(ids) != 3 || ids[0]+ids[1]+ids[2] != "" {
					t.Errorf("PublishBatch returned IDs %q, want 3 empty", ids)
				}

				res, err := p.PublishItems(ctx, stream, []Item{{Event: Event{Type: "a"}}, {Event: Event{Type: "b"}, Due: due}})
				check(t, "PublishItems", err)
				if !errors.As(err, &berr) || berr.Failed != 2 || berr.Total != 2 {
					t.Errorf("PublishItems: err = %v, want a BatchError of 2 of 2", err)
				}
				if len(res) != 2 {
					t.Fatalf("PublishItems returned %d results, want 2", len(res))
				}
				for i, r := range res {
					check(t, "PublishItems result", r.Err)
					if r.ID != "" || r.Stream == "" {
						t.Errorf("PublishItems result %d = %+v, want a stream and no ID", i, r)
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		// After the subtests: Redis holds nothing, in any database.
		if ks := admin.Info(context.Background(), "keyspace").Val(); strings.Contains(ks, "keys=") {
			t.Errorf("refused writes left keys:\n%s", ks)
		}
	})
}

// The advice names the setting the caller says the credentials came from.
func TestAccessErrorNamesSettings(t *testing.T) {
	t.Parallel()
	srv, _, _ := refusingRedis(t)
	c, err := NewClient("redis://:wrong@" + srv.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := New(c, Options{Settings: `APP_REDIS="redis://:xxxxx@h/0"`})
	_, err = p.PublishBatch(context.Background(), testredis.Prefix(t)+"s", []Event{{Type: "t"}})
	if want := `authentication failed: check the user name and password in APP_REDIS="redis://:xxxxx@h/0", and that the user is enabled (Redis: WRONGPASS`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", err, want)
	}
}
