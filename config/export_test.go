package config

import "github.com/redis/go-redis/v9"

// FailoverOptions returns the options NewClient gives a Sentinel client,
// whose own Options() hide the Sentinel settings.
func (r Redis) FailoverOptions(opts ...ClientOption) (*redis.FailoverOptions, error) {
	o, err := r.urlOptions()
	if err != nil {
		return nil, err
	}
	return r.failoverOptions(o, tune(opts)), nil
}
