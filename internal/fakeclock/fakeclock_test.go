package fakeclock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	c := New(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v", c.Now())
	}
	c.Add(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Errorf("after Add: %v", got)
	}
	c.Set(start)
	if !c.Now().Equal(start) {
		t.Errorf("after Set: %v", c.Now())
	}
}
