package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// testRefusedConnection runs every sending command against a Redis that
// refuses the connection (a wrong password, a disabled user, a database out
// of range): each fails with status 1, says why and which setting to check,
// claims nothing sent, never shows a password, and Redis holds nothing.
func testRefusedConnection(t *testing.T, c *binary) {
	srv := testredis.Start(t)
	ctx := context.Background()
	setup := srv.Client(t)
	offPass := "pw-off-" + testredis.RandomID()
	if err := setup.Do(ctx, "ACL", "SETUSER", "off", "off", ">"+offPass, "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	pass := "pw-" + testredis.RandomID()
	if err := setup.ConfigSet(ctx, "requirepass", pass).Err(); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: pass})
	defer admin.Close()

	wrong := "wrong-" + testredis.RandomID()
	file := writeFile(t, "in.jsonl", strings.Repeat(`{"type":"t"}`+"\n"+`{"type":"d","delay":"1h"}`+"\n", 500))
	t.Run("Cases", func(t *testing.T) { // returns when its parallel subtests have
		for _, setting := range []struct {
			name, url, secret string
			says              []string
		}{
			{"WrongPassword", "redis://:" + wrong + "@" + srv.Addr + "/0", wrong,
				[]string{"authentication failed: check the user name and password in %s, and that the user is enabled", "WRONGPASS"}},
			{"DisabledUser", "redis://off:" + offPass + "@" + srv.Addr + "/0", offPass,
				[]string{"authentication failed: check the user name and password in %s, and that the user is enabled", "WRONGPASS"}},
			{"DatabaseOutOfRange", "redis://:" + pass + "@" + srv.Addr + "/99", pass,
				[]string{"database index out of range: check the database number at the end of %s", "DB index is out of range"}},
		} {
			for _, cmd := range []struct {
				name   string
				args   []string
				stdout string // its prefix; "" for nothing at all
			}{
				{"Send", []string{"send", "--stream", "s", "--type", "t"}, ""},
				{"SendDelayed", []string{"send", "--stream", "s", "--type", "t", "--delay", "1h"}, ""},
				{"SendPartitioned", []string{"send", "--stream", "s", "--type", "t", "--partitions", "3", "--key", "k"}, ""},
				{"SendFile", []string{"send", "--stream", "s", "--file", file}, "sent 0, rejected 0 "},
				{"SendFilePartitioned", []string{"send", "--stream", "s", "--file", file, "--partitions", "3"}, "sent 0, rejected 0 "},
				{"Load", []string{"load", "--stream", "s", "--type", "t", "--count", "1000"}, `sent 0 events to stream "s" in `},
				{"LoadPartitioned", []string{"load", "--stream", "s", "--type", "t", "--count", "1000", "--partitions", "3"}, `sent 0 events to stream "s" (3 partitions) in `},
			} {
				for _, flag := range []bool{false, true} {
					name, args, env, named := setting.name+"/"+cmd.name, cmd.args, "REDIS_URL="+setting.url, "REDIS_URL"
					if flag {
						// REDIS_URL still names the shared server: the flag wins.
						name, args, env, named = name+"/RedisURLFlag", append(args, "--redis-url", setting.url), "", "--redis-url"
					}
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						var r result
						if env == "" {
							r = c.run(t, "", args)
						} else {
							r = c.run(t, "", args, env)
						}
						shown := fmt.Sprintf("%s=%q", named, strings.ReplaceAll(setting.url, setting.secret, "xxxxx"))
						var want []string
						for _, s := range setting.says {
							want = append(want, strings.ReplaceAll(s, "%s", shown))
						}
						r.Want(t, 1, want...)
						if (cmd.stdout == "" && r.Stdout != "") || !strings.HasPrefix(r.Stdout, cmd.stdout) {
							t.Errorf("stdout = %q, want it to start %q", r.Stdout, cmd.stdout)
						}
						if strings.Contains(r.Stderr, "may or may not have happened") {
							t.Errorf("stderr = %q: a refused write did not happen", r.Stderr)
						}
						if strings.Contains(r.Stdout+r.Stderr, setting.secret) {
							t.Errorf("the password is shown:\nstdout: %s\nstderr: %s", r.Stdout, r.Stderr)
						}
					})
				}
			}
		}
	})
	if ks := admin.Info(ctx, "keyspace").Val(); strings.Contains(ks, "keys=") {
		t.Errorf("refused commands left keys:\n%s", ks)
	}
}

// testDialError: when Redis cannot be reached the error says which setting
// gave the address, with its value but not its password.
func testDialError(t *testing.T, c *binary) {
	const url = "redis://app:s3cret-dial@127.0.0.1:1/0"
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"Send", []string{"send", "--stream", "s", "--type", "t"}, []string{"REDIS_URL=" + url},
			`cannot reach Redis: check the host and port in REDIS_URL="redis://app:xxxxx@127.0.0.1:1/0" and that Redis is up there`},
		{"SendFile", []string{"send", "--stream", "s", "--file", "-"}, []string{"REDIS_URL=" + url},
			`cannot reach Redis: check the host and port in REDIS_URL="redis://app:xxxxx@127.0.0.1:1/0"`},
		{"Load", []string{"load", "--stream", "s", "--type", "t", "--count", "5"}, []string{"REDIS_URL=" + url},
			`cannot reach Redis: check the host and port in REDIS_URL="redis://app:xxxxx@127.0.0.1:1/0"`},
		{"Flag", []string{"send", "--stream", "s", "--type", "t", "--redis-url", url}, nil,
			`cannot reach Redis: check the host and port in --redis-url="redis://app:xxxxx@127.0.0.1:1/0"`},
		{"Cluster", []string{"send", "--stream", "s", "--type", "t"}, []string{"REDIS_URL=" + url, "REDIS_CLUSTER_ADDRS=127.0.0.1:1"},
			`cannot reach Redis: check REDIS_CLUSTER_ADDRS="127.0.0.1:1"`},
		{"Sentinel", []string{"load", "--stream", "s", "--type", "t", "--count", "5"}, []string{"REDIS_URL=" + url, "REDIS_SENTINEL_ADDRS=127.0.0.1:1", "REDIS_SENTINEL_MASTER=mymaster"},
			`cannot reach Redis: check REDIS_SENTINEL_ADDRS="127.0.0.1:1" and REDIS_SENTINEL_MASTER="mymaster"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := c.run(t, `{"type":"t"}`+"\n", tc.args, tc.env...)
			r.Want(t, 1, "connection refused", tc.want)
			if strings.Contains(r.Stdout+r.Stderr, "s3cret") {
				t.Errorf("the password is shown:\nstdout: %s\nstderr: %s", r.Stdout, r.Stderr)
			}
		})
	}
}
