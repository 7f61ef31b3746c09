package worker

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before attempt+1 after attempt failed: base
// doubled per attempt, capped at max, with equal jitter (half fixed, half
// random) so that failures of a burst do not come back at one instant.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	half := d / 2
	return half + rand.N(half+1)
}
