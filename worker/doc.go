// Package worker is the consumer-group runtime: it reads stream entries with
// XREADGROUP, routes each by its type field to a Handler through a Mux, runs
// handlers in a bounded pool, acknowledges successes in batches, schedules
// retries with backoff, dead-letters what cannot succeed and shuts down
// without losing or double-acknowledging work.
//
// A user's binary builds a Mux and calls Main (or Run, to own the process).
// The files, by what they hold:
//
//	message.go, mux.go, middleware.go   the handler API: Message, Handler, Mux, middleware
//	main.go                              Main and Run: config, Redis, the run group, HTTP
//	runtime.go                           engine.Run: start list, drain, stop list; process, complete
//	component.go                         the one way a background loop is started and stopped
//	fetch.go                             a stream's fetchers: reads, replays own pending entries
//	dispatch.go                          the dispatch path every delivery enters
//	cancel.go                            cancelled entries: acknowledged unrun on the dispatch path
//	queue.go, semaphore.go, msgctx.go    the pool's job queue, handler slots, per-worker contexts
//	acks.go, settle.go                   batched acknowledgements, a lane per primary; retries and dead letters
//	settlebatch.go                       failures' retries and dead letters written in batches
//	lease.go, isolate.go                 leases on running entries; suspects one at a time
//	partition*.go, takeover.go, ordered.go  partitioned streams: ownership, take-over, per-key order
//	promote.go                           the delayed sets' promoter
//	schedule.go                          the periodic events (WORKER_SCHEDULE, WithSchedule): each tick once
//	trim.go                              WORKER_RETENTION trimming under a lease; the delayed-set bound
//	effects.go                           effects committed in one script with the acknowledgement
//	cluster.go, slots.go                 Redis Cluster: slot map reloads, the one-slot check
//	health.go, metrics.go, gc.go         liveness, Prometheus metrics, GC default
//	probe.go                             readiness probe (a frozen Redis); writes held back under OOM
//	tracing.go                           OpenTelemetry: a process span per message, when OTEL_* turn it on
//	backoff.go                           retry and Redis-failure backoff
package worker
