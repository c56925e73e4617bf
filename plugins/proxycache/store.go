package proxycache

import (
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto"
)

// Entry is one cached response, shaped like Kong's cached object.
type Entry struct {
	Status    int         `json:"status"`
	Headers   [][2]string `json:"-"`
	Body      []byte      `json:"-"`
	Stored    time.Time   `json:"-"`
	Timestamp int64       `json:"timestamp"`
	TTL       int64       `json:"ttl"`
	Version   int         `json:"version"`
}

// Store is the memory strategy: a ristretto cache bounded by bytes, so a
// flood of distinct URLs evicts by cost instead of growing without limit.
type Store struct {
	c *ristretto.Cache
}

// NewStore returns a cache holding at most maxBytes of responses.
func NewStore(maxBytes int64) (*Store, error) {
	c, err := ristretto.NewCache(&ristretto.Config{
		NumCounters: 1e6, MaxCost: maxBytes, BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("create proxy cache: %w", err)
	}
	return &Store{c: c}, nil
}

func (s *Store) get(key string) *Entry {
	v, ok := s.c.Get(key)
	if !ok {
		return nil
	}
	return v.(*Entry)
}

func (s *Store) put(key string, e *Entry, ttl int64) {
	cost := int64(len(e.Body)) + 256
	for _, h := range e.Headers {
		cost += int64(len(h[0]) + len(h[1]))
	}
	s.c.SetWithTTL(key, e, cost, time.Duration(ttl)*time.Second)
	// ristretto applies sets asynchronously; waiting makes the entry
	// visible to the very next request, which is what clients expect of
	// a cache that just answered "Miss".
	s.c.Wait()
}

// Lookup returns the cached object for key in Kong's admin shape.
func (s *Store) Lookup(key string) (map[string]any, bool) {
	e := s.get(key)
	if e == nil {
		return nil, false
	}
	hdrs := map[string]any{}
	for _, h := range e.Headers {
		hdrs[h[0]] = h[1]
	}
	return map[string]any{
		"status": e.Status, "headers": hdrs, "body": string(e.Body), "body_len": len(e.Body),
		"timestamp": e.Timestamp, "ttl": e.TTL, "version": e.Version, "req_body": nil,
	}, true
}

// Delete removes key, reporting whether it was cached.
func (s *Store) Delete(key string) bool {
	if s.get(key) == nil {
		return false
	}
	s.c.Del(key)
	s.c.Wait()
	return true
}

// Purge empties the cache.
func (s *Store) Purge() { s.c.Clear() }
