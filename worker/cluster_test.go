package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRoutingErrorsReloadTheSlotMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"None", nil, false},
		{"Nil", redis.Nil, false},
		{"Canceled", context.Canceled, false},
		{"ConnectionRefused", &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, true},
		{"EOF", io.EOF, true},
		{"Timeout", context.DeadlineExceeded, true},
		{"Wrapped", fmt.Errorf("claiming: %w", io.EOF), true},
		{"Moved", replyError("MOVED 3999 127.0.0.1:6381"), true},
		{"Ask", replyError("ASK 3999 127.0.0.1:6381"), true},
		{"ClusterDown", replyError("CLUSTERDOWN The cluster is down"), true},
		{"TryAgain", replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"ReadOnly", replyError("READONLY You can't write against a read only replica."), true},
		{"NoGroup", replyError("NOGROUP No such key 's' or consumer group 'g'"), false},
		{"WrongType", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := routingError(tc.err); got != tc.want {
				t.Errorf("routingError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestClusterRoutesOnlyForClusterClients(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	cr := newClusterRoutes(c)
	if cr != nil {
		t.Fatal("a single-server client got cluster routes")
	}
	cr.failed(io.EOF) // nil: a no-op
}
