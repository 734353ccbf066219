package verify

import (
	"container/list"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// Resolver looks up DNS TXT records. It is the only way this package talks
// to DNS, so tests can serve keys from a map.
//
// A name that does not exist should be reported as a *net.DNSError with
// IsNotFound set, as net.Resolver does: the DKIM and DMARC code treats that
// as a permanent "no record" answer and anything else as a lookup failure.
type Resolver interface {
	// LookupTXT returns the TXT records of name, one string per record
	// (the strings of one record concatenated).
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// NetResolver returns a Resolver backed by the system's net.Resolver.
func NetResolver() Resolver {
	return netResolver{r: &net.Resolver{}}
}

type netResolver struct {
	r *net.Resolver
}

func (n netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return n.r.LookupTXT(ctx, name)
}

// Defaults of NewCachingResolver.
const (
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 1024
)

// NewCachingResolver wraps r with a small least-recently-used cache of at
// most size names, each kept for ttl. Answers and "name does not exist"
// errors (*net.DNSError with IsNotFound) are cached; other errors (timeouts,
// server failures, cancelled contexts) are not. A ttl or size <= 0 selects
// DefaultCacheTTL or DefaultCacheSize. The returned Resolver is safe for
// concurrent use.
func NewCachingResolver(r Resolver, ttl time.Duration, size int) Resolver {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &cachingResolver{
		next:    r,
		ttl:     ttl,
		size:    size,
		now:     time.Now,
		entries: make(map[string]*list.Element),
		order:   list.New(),
	}
}

type cachingResolver struct {
	next Resolver
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // value: *cacheEntry
	order   *list.List               // front = most recently used
}

type cacheEntry struct {
	name    string
	txts    []string
	err     error // nil or a not-found *net.DNSError
	expires time.Time
}

func (c *cachingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	key := strings.ToLower(strings.TrimSuffix(name, "."))
	if txts, err, ok := c.get(key); ok {
		return txts, err
	}
	txts, err := c.next.LookupTXT(ctx, name)
	var dnsErr *net.DNSError
	if err == nil || (errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		c.put(key, txts, err)
	}
	return cloneStrings(txts), err
}

func (c *cachingResolver) get(key string) ([]string, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.entries, key)
		return nil, nil, false
	}
	c.order.MoveToFront(el)
	return cloneStrings(e.txts), e.err, true
}

func (c *cachingResolver) put(key string, txts []string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{name: key, txts: cloneStrings(txts), err: err, expires: c.now().Add(c.ttl)}
	if el, ok := c.entries[key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(e)
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).name)
	}
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
