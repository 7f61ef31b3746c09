package ratelimit_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
)

// redisAddr is the shared test server, started before the tests so that
// Example functions, which get no *testing.T, can connect to it.
var redisAddr string

func TestMain(m *testing.M) {
	redisAddr = testredis.Shared(mainTB{}).Addr
	testredis.Main(m)
}

// mainTB lets TestMain start the shared server: it is the part of
// testing.TB that testredis.Shared uses before any test runs.
type mainTB struct{ testing.TB }

func (mainTB) Helper() {}

func (mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
