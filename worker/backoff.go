package worker

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before attempt+1 after attempt failed: base
// doubled per attempt, capped at ceiling, with equal jitter (half fixed, half
// random) so that failures of a burst do not come back at one instant.
func backoff(attempt int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling || d <= 0 {
		d = ceiling
	}
	half := d / 2
	return half + rand.N(half+1)
}
