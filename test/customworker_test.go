package test

import (
	"testing"

	"github.com/streamworker/streamworker/internal/testbin"
)

// TestCustomWorker runs a worker binary written as a user would write one
// (testdata/customworker: own handlers on a worker.Mux, run by worker.Main)
// as a process against its own redis-server, and checks every message's fate
// in Redis. The binary is built once; the subtests run in parallel, each with
// its own Redis.
func TestCustomWorker(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/customworker", "customworker", raceEnabled)
	t.Run("MixedOutcomes", func(t *testing.T) { testMixedOutcomes(t, bin, true) })
	t.Run("MixedOutcomesRetriedThroughDelayedSet", func(t *testing.T) { testMixedOutcomes(t, bin, false) })
	t.Run("SIGTERMDrainsInFlight", func(t *testing.T) { testDrainOnSIGTERM(t, bin) })
	t.Run("ShutdownDeadlineHandsOver", func(t *testing.T) { testHandOverAtDeadline(t, bin) })
	t.Run("SecondSignalHurriesShutdown", func(t *testing.T) { testSecondSignal(t, bin) })
	t.Run("BadConfiguration", func(t *testing.T) { testBadConfiguration(t, bin) })
	t.Run("EffectsKilledBeforeCommit", func(t *testing.T) { testEffectsKilledBeforeCommit(t, bin) })
	t.Run("EffectsUnderRandomKills", func(t *testing.T) { testEffectsUnderRandomKills(t, bin) })
}
