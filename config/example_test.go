package config_test

import (
	"errors"
	"fmt"

	"github.com/streamworker/streamworker/config"
)

// Default is the configuration Load returns for an empty environment; tests
// and embedded workers start from it and change what they need.
func ExampleDefault() {
	cfg := config.Default()
	cfg.Consumer = "replica-0" // the default is the hostname
	fmt.Println("streams:", cfg.Streams, "group:", cfg.Group, "start:", cfg.GroupStart)
	fmt.Println("concurrency:", cfg.Concurrency, "fetch:", cfg.FetchCount, "block:", cfg.Block)
	fmt.Println("attempts:", cfg.MaxAttempts, "backoff:", cfg.RetryBase, "to", cfg.RetryMax)
	fmt.Println("http:", cfg.HTTPAddr, "log:", cfg.LogLevel, cfg.LogFormat)
	fmt.Println("valid:", cfg.Validate() == nil)
	// Output:
	// streams: [events] group: workers start: earliest
	// concurrency: 64 fetch: 256 block: 2s
	// attempts: 5 backoff: 1s to 10m0s
	// http: :8080 log: info json
	// valid: true
}

// A bad value is reported as one line naming the environment variable, the
// value given and what is allowed; a password in REDIS_URL is redacted.
func ExampleConfig_Validate() {
	cfg := config.Default()
	cfg.Consumer = "replica-0"
	cfg.Concurrency = 0
	fmt.Println(cfg.Validate())

	cfg = config.Default()
	cfg.Consumer = "replica-0"
	cfg.RedisURL = "http://app:s3cret@cache:6379"
	err := cfg.Validate()
	fmt.Println(err)

	var cerr *config.Error
	if errors.As(err, &cerr) {
		fmt.Println("variable:", cerr.Var)
	}
	// Output:
	// WORKER_CONCURRENCY="0" is invalid: want an integer from 1 to 100000
	// REDIS_URL="http://app:xxxxx@cache:6379" is invalid: want a URL such as redis://host:6379/0 or rediss://user:password@host:6380/0
	// variable: REDIS_URL
}
