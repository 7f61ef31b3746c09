package reclaim

// HeartbeatKey marks consumer of group alive on stream while it exists
// (SET with a TTL of the gone-after age). It shares the stream's hash tag.
// The runtime's other keys are built in worker/keys.go.
func HeartbeatKey(stream, group, consumer string) string {
	return stream + ":alive:" + group + ":" + consumer
}
