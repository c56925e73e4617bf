package ratelimiting

import (
	"hash/maphash"
	"sync"
	"time"
)

// Usage is one window's state after a Take.
type Usage struct {
	Remaining int64
	Reset     int64 // seconds until the window ends, at least 1
}

// Store holds the local counters. Keys are sharded so unrelated clients do
// not contend on one lock; within a shard, checking every window and
// incrementing them happens under one lock, which is what makes the count
// exact under concurrency.
type Store struct {
	seed   maphash.Seed
	shards [64]shard
}

type shard struct {
	mu        sync.Mutex
	counts    map[counterKey]int64
	lastSweep int64
}

type counterKey struct {
	key    string
	period string
	start  int64
}

// NewStore returns an empty counter store.
func NewStore() *Store {
	s := &Store{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].counts = map[counterKey]int64{}
	}
	return s
}

// windowStart returns the calendar window containing now (UTC) and its end.
func windowStart(p string, now time.Time) (start, end int64) {
	u := now.UTC()
	switch p {
	case "second":
		s := u.Unix()
		return s, s + 1
	case "minute":
		s := u.Unix() / 60 * 60
		return s, s + 60
	case "hour":
		s := u.Unix() / 3600 * 3600
		return s, s + 3600
	case "day":
		s := u.Unix() / 86400 * 86400
		return s, s + 86400
	case "month":
		t := time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC)
		return t.Unix(), t.AddDate(0, 1, 0).Unix()
	default: // year
		t := time.Date(u.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return t.Unix(), t.AddDate(1, 0, 0).Unix()
	}
}

// Take admits one request for key if every window has room, counting it in
// all of them; otherwise it counts nothing. usage receives each window's
// remaining count and reset.
func (s *Store) Take(key string, now time.Time, periods []period, usage []Usage) bool {
	sh := &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
	sec := now.Unix()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sec-sh.lastSweep >= 1 {
		sh.sweep(sec)
	}
	allowed := true
	var keys [6]counterKey
	for i, p := range periods {
		start, end := windowStart(p.name, now)
		keys[i] = counterKey{key, p.name, start}
		used := sh.counts[keys[i]]
		if used >= p.limit {
			allowed = false
		}
		usage[i] = Usage{Remaining: p.limit - used, Reset: max(end-sec, 1)}
	}
	for i := range periods {
		if allowed {
			sh.counts[keys[i]]++
			usage[i].Remaining--
		}
		if usage[i].Remaining < 0 {
			usage[i].Remaining = 0
		}
	}
	return allowed
}

// sweep drops counters of finished windows, keeping memory bounded by the
// number of keys active in current windows.
func (sh *shard) sweep(now int64) {
	sh.lastSweep = now
	for k := range sh.counts {
		if _, end := windowStart(k.period, time.Unix(k.start, 0)); end <= now {
			delete(sh.counts, k)
		}
	}
}

// Len returns the number of live counters (for tests and metrics).
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].counts)
		s.shards[i].mu.Unlock()
	}
	return n
}
