package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// scriptedResolver answers from a map, fails names in temp with a
// temporary error, and counts queries per name.
type scriptedResolver struct {
	mu      sync.Mutex
	records map[string][]string
	temp    map[string]bool
	calls   map[string]int
}

func (s *scriptedResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[name]++
	if s.temp[name] {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	if txts, ok := s.records[name]; ok {
		return txts, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (s *scriptedResolver) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[name]
}

func TestCachingResolver(t *testing.T) {
	ctx := context.Background()
	next := &scriptedResolver{
		records: map[string][]string{"a.example": {"v=1"}, "b.example": {"v=2"}, "c.example": {"v=3"}},
		temp:    map[string]bool{"flaky.example": true},
		calls:   map[string]int{},
	}
	r := NewCachingResolver(next, time.Minute, 2).(*cachingResolver)
	clock := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return clock }

	// Answers are cached, case-insensitively, and copies are returned.
	got, err := r.LookupTXT(ctx, "a.example")
	if err != nil || len(got) != 1 || got[0] != "v=1" {
		t.Fatalf("LookupTXT(a) = %v, %v", got, err)
	}
	got[0] = "mutated"
	got, _ = r.LookupTXT(ctx, "A.EXAMPLE.")
	if got[0] != "v=1" {
		t.Fatalf("cached answer was mutated through a returned slice: %v", got)
	}
	if n := next.count("a.example"); n != 1 {
		t.Fatalf("a.example queried %d times, want 1", n)
	}

	// Negative answers are cached and keep their type.
	for range 2 {
		_, err = r.LookupTXT(ctx, "missing.example")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Fatalf("LookupTXT(missing) error = %v, want not-found DNSError", err)
		}
	}
	if n := next.count("missing.example"); n != 1 {
		t.Fatalf("missing.example queried %d times, want 1", n)
	}

	// Temporary failures are not cached.
	for range 2 {
		if _, err := r.LookupTXT(ctx, "flaky.example"); err == nil {
			t.Fatal("LookupTXT(flaky) succeeded")
		}
	}
	if n := next.count("flaky.example"); n != 2 {
		t.Fatalf("flaky.example queried %d times, want 2", n)
	}

	// Size 2: adding b.example evicts the least recently used, a.example.
	r.LookupTXT(ctx, "b.example")
	r.LookupTXT(ctx, "a.example")
	if n := next.count("a.example"); n != 2 {
		t.Fatalf("a.example queried %d times after eviction, want 2", n)
	}

	// Entries expire after the ttl.
	r.LookupTXT(ctx, "a.example")
	if n := next.count("a.example"); n != 2 {
		t.Fatalf("a.example queried %d times before expiry, want 2", n)
	}
	clock = clock.Add(time.Minute)
	r.LookupTXT(ctx, "a.example")
	if n := next.count("a.example"); n != 3 {
		t.Fatalf("a.example queried %d times after expiry, want 3", n)
	}
}

func TestCachingResolverConcurrent(t *testing.T) {
	next := &scriptedResolver{records: map[string][]string{}, calls: map[string]int{}}
	for i := range 20 {
		next.records[fmt.Sprintf("n%d.example", i)] = []string{fmt.Sprint(i)}
	}
	r := NewCachingResolver(next, time.Minute, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("n%d.example", (i*7+g)%20)
				got, err := r.LookupTXT(context.Background(), name)
				if err != nil || len(got) != 1 || fmt.Sprintf("n%s.example", got[0]) != name {
					t.Errorf("LookupTXT(%s) = %v, %v", name, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
