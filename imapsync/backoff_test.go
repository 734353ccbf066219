package imapsync

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	bases := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, base := range bases {
		base *= time.Millisecond
		if got := b.current(); got != base {
			t.Fatalf("step %d: base %v, want %v", i, got, base)
		}
		d := b.next()
		if d < base/2 || d > base {
			t.Fatalf("step %d: delay %v outside [%v, %v]", i, d, base/2, base)
		}
	}
	b.reset()
	if got := b.current(); got != 100*time.Millisecond {
		t.Fatalf("after reset: %v", got)
	}
}

func BenchmarkBackoffNext(b *testing.B) {
	b.ReportAllocs()
	bo := backoff{min: time.Millisecond, max: time.Minute}
	for b.Loop() {
		if bo.next() > time.Minute {
			b.Fatal("over max")
		}
	}
}
