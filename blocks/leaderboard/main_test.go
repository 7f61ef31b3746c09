package leaderboard_test

import (
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
)

// redisAddr is the shared test server, started before the tests so that
// Example functions, which get no *testing.T, can connect to it.
var redisAddr string

func TestMain(m *testing.M) {
	redisAddr = testredis.MustShared().Addr
	testredis.Main(m)
}
