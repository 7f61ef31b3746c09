package handlertest_test

import (
	"testing"

	"github.com/streamworker/streamworker/handlers/handlertest"
)

func TestMain(m *testing.M) { handlertest.Main(m) }
