package testredis

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/ory/dockertest/v3"
)

// dockerRedis is the fallback for machines with Docker but no redis-server.
type dockerRedis struct {
	pool     *dockertest.Pool
	resource *dockertest.Resource
}

func startDocker(args []string) (*Server, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("no redis-server on PATH and no Docker (%w): install redis-server or set TEST_REDIS_URL", err)
	}
	if err := pool.Client.Ping(); err != nil {
		return nil, fmt.Errorf("no redis-server on PATH and Docker is not reachable (%w): install redis-server or set TEST_REDIS_URL", err)
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "redis", Tag: "7-alpine",
		Cmd: append([]string{"redis-server", "--save", "", "--appendonly", "no"}, args...),
	})
	if err != nil {
		return nil, fmt.Errorf("starting redis container: %w", err)
	}
	d := &dockerRedis{pool: pool, resource: res}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", res.GetPort("6379/tcp")), docker: d}
	if err := s.waitReady(nil); err != nil {
		d.purge()
		return nil, errors.Join(errors.New("redis container did not become ready"), err)
	}
	return s, nil
}

func (d *dockerRedis) kill(t testing.TB) {
	if err := d.pool.Client.StopContainer(d.resource.Container.ID, 0); err != nil {
		t.Fatalf("stopping redis container: %v", err)
	}
}

func (d *dockerRedis) purge() { _ = d.pool.Purge(d.resource) }
