// Package bench is the go test side of the benchmarks: throughput of the
// producer and of the runtime against one real redis-server, beside the
// bare go-redis loop and the peers, and micro-benchmarks of the hot
// functions with allocation counts. The comparison harness that runs every
// system in processes of their own is cmd/compare; what both use lives in
// internal/.
package bench
