// Package test holds the whole-process end-to-end tests: real worker binaries
// run as processes against real redis-server processes started by
// internal/testredis, driven with signals, and checked through Redis itself.
package test

import (
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }
