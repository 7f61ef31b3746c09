//go:build race

package test

// raceEnabled builds the worker binaries under test with -race too, so a data
// race in the runtime under a real workload fails the test.
const raceEnabled = true
