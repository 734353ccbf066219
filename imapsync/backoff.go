package imapsync

import (
	"math/rand/v2"
	"time"
)

// backoff is an exponential delay between min and max. It is not safe for
// concurrent use; each folder loop owns one.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the next base delay; 0 means min
}

// next returns the delay to wait now, with jitter in [base/2, base], and
// doubles the base for the following call.
func (b *backoff) next() time.Duration {
	base := b.current()
	b.cur = min(base*2, b.max)
	if base <= 1 {
		return base
	}
	half := base / 2
	return half + rand.N(base-half+1)
}

// current returns the base delay the next call to next will use.
func (b *backoff) current() time.Duration {
	if b.cur < b.min {
		return b.min
	}
	return b.cur
}

// reset makes the next delay min again.
func (b *backoff) reset() { b.cur = 0 }
