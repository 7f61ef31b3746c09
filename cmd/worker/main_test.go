package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func noEnv(string) string { return "" }

func TestDemoOnEmbeddedRedis(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--demo", "--demo-events", "100"}, noEnv, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	for _, want := range []string{
		"NOT DURABLE",
		"payment.charge",
		"every event accounted for",
		`error="permanent: invalid email address"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, &out)
		}
	}
}

func TestDemoOnGivenRedis(t *testing.T) {
	srv := testredis.Start(t)
	env := func(k string) string {
		if k == "REDIS_URL" {
			return srv.URL()
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--demo", "--demo-events", "50"}, env, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s%s", err, &out, &errOut)
	}
	if strings.Contains(out.String(), "NOT DURABLE") || !strings.Contains(out.String(), "using the Redis at "+srv.URL()) {
		t.Errorf("demo with REDIS_URL must use it:\n%s", &out)
	}
}

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--demo", "--demo-events", "0"}, "--demo-events=0: want at least 1"},
		{[]string{"--demo-events", "x"}, `invalid value "x" for flag -demo-events`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, noEnv, &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}
