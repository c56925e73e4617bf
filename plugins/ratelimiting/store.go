package ratelimiting

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Window is one limit of a plugin as it applies at the moment of a request:
// which counting window is current, and how many requests it allows.
type Window struct {
	Size  int64 // seconds (calendar periods: Kong's nominal length)
	Start int64 // unix seconds
	End   int64
	Limit int64
	// Sliding windows also weigh the previous window by how much of it
	// still overlaps the last Size seconds (Kong's rate-limiting-advanced).
	Sliding bool
}

// Policy says how a plugin's counters are shared.
type Policy struct {
	// SyncEvery is how often this node reports changed counts to its
	// peers; 0 keeps the counters on this node alone (policy local).
	SyncEvery time.Duration
	// Share limits a node that sees only part of the cluster to its share
	// of the limit (partition_behavior local_share).
	Share bool
	// Penalty counts rejected requests too (rate-limiting-advanced's
	// sliding windows unless disable_penalty is set).
	Penalty bool
}

// Usage is one window's state after a Take.
type Usage struct {
	Limit     int64 // the limit in force (lower than configured under local_share)
	Remaining int64
	Reset     int64 // seconds until the window ends, at least 1
	// Retry is, after a refusal, the number of seconds until a request
	// would be admitted again if no other request arrives, at least 1
	// (for Retry-After).
	Retry int64
}

// maxKeyLen bounds the identifier part of a counter key: longer keys (a
// huge header value) are replaced by their SHA-256, the same on every
// node, so a report always fits a gossip packet.
const maxKeyLen = 160

// DefaultMaxCounters bounds the counters one node keeps (its own and its
// peers'): about 200 bytes each, so roughly 200 MB at the limit.
const DefaultMaxCounters = 1 << 20

const shardCount = 64

// Store holds the counters of every rate-limiting plugin on this node:
// this node's own counts and the latest counts its peers reported. Keys
// are sharded so unrelated clients do not contend on one lock; within a
// shard, checking every window and counting the request happen under one
// lock, which is what makes a single node's count exact under concurrency.
//
// Counters outlive plugin configs (a PATCH must not reset clients), and
// expire with their windows.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard
	// perShard bounds each shard's map; see evict.
	perShard int

	nodesMu sync.RWMutex
	nodes   []string // peer slot -> node name
	slots   map[string]uint16

	// live and size are the gossip membership's view: nodes this node can
	// hear, and members of the cluster (for local_share).
	live, size atomic.Int32

	evicted, deferred atomic.Int64
}

type shard struct {
	mu        sync.Mutex
	counts    map[counterKey]*counter
	dirty     []counterKey
	lastSweep int64
}

type counterKey struct {
	key         string
	size, start int64
}

type counter struct {
	local   int64
	peers   []peerCount
	peerSum int64
	expires int64 // unix seconds; dropped at or after this
	every   int64 // gossip interval in ns, 0 for local-only counters
	sentAt  int64 // unix ns of the last report of this counter
	dirty   bool
}

// peerCount is the latest count a peer reported for one window, with the
// peer's recent rate, used to estimate what it admitted since.
type peerCount struct {
	slot uint16
	n    int64
	at   int64   // unix ns when the report arrived
	rate float64 // requests per ns over the last report interval
}

// NewStore returns an empty counter store holding at most max counters
// (DefaultMaxCounters when max <= 0).
func NewStore(max int) *Store {
	if max <= 0 {
		max = DefaultMaxCounters
	}
	s := &Store{seed: maphash.MakeSeed(), perShard: max/shardCount + 1, slots: map[string]uint16{}}
	for i := range s.shards {
		s.shards[i].counts = map[counterKey]*counter{}
	}
	s.live.Store(1)
	s.size.Store(1)
	return s
}

// view is b as a string without a copy, for a key passed to Take, which
// copies what it keeps; b must not change while the string is in use.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func canonicalKey(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (s *Store) shardOf(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

// SetMembership records how many cluster members this node can hear
// (itself included) and how many there are.
func (s *Store) SetMembership(live, size int) {
	s.live.Store(int32(max(live, 1)))
	s.size.Store(int32(max(size, 1)))
}

// effective is the limit a node enforces: the whole limit, or under
// local_share its share L × live / size while it hears only part of the
// cluster.
func (s *Store) effective(limit int64, p Policy) int64 {
	if !p.Share || p.SyncEvery == 0 {
		return limit
	}
	live, size := int64(s.live.Load()), int64(s.size.Load())
	if live >= size {
		return limit
	}
	return max(limit*live/size, 1)
}

// estimate is the cluster-wide count of c at now: this node's exact count
// plus each peer's last report, extrapolated at the peer's recent rate for
// at most one and a half report intervals (a peer that stays silent longer
// has not counted anything since). Extrapolating is what keeps balanced
// load close to the limit: without it every node admits, unseen, what its
// peers admitted in the last interval.
func (c *counter) estimate(now int64) float64 {
	est := float64(c.local)
	for i := range c.peers {
		p := &c.peers[i]
		est += float64(p.n)
		if age := now - p.at; c.every > 0 && age > 0 && age <= c.every*3/2 {
			est += p.rate * float64(age)
		}
	}
	return est
}

func (c *counter) total() int64 { return c.local + c.peerSum }

// Take admits one request for key if every window has room, counting it in
// all of them; otherwise it counts nothing (or, with Penalty, counts it
// anyway). usage receives each window's state. key may share a caller's
// buffer (the handlers build it in one on the stack): what Take keeps, it
// copies, so a hot counter's requests allocate nothing.
func (s *Store) Take(key string, now time.Time, ws []Window, p Policy, usage []Usage) bool {
	key = canonicalKey(key)
	sh := s.shardOf(key)
	sec, ns := now.Unix(), now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sec-sh.lastSweep >= 1 {
		sh.sweep(sec)
	}
	allowed := true
	var curBuf [8]*counter
	var estBuf [8]float64
	curs, ests := curBuf[:], estBuf[:]
	if len(ws) > len(curBuf) {
		curs, ests = make([]*counter, len(ws)), make([]float64, len(ws))
	}
	for i, w := range ws {
		exp := w.End
		if w.Sliding {
			exp = w.End + w.Size
		}
		c := s.get(sh, counterKey{key, w.Size, w.Start}, exp, sec)
		if p.SyncEvery > 0 {
			c.every = int64(p.SyncEvery)
		}
		est := c.estimate(ns)
		if w.Sliding {
			if prev := sh.counts[counterKey{key, w.Size, w.Start - w.Size}]; prev != nil {
				est += float64(prev.total()) * float64(w.End*1e9-ns) / float64(w.Size*1e9)
			}
		}
		limit := s.effective(w.Limit, p)
		if est >= float64(limit) {
			allowed = false
		}
		curs[i], ests[i] = c, est
		usage[i] = Usage{Limit: limit, Reset: max(w.End-sec, 1)}
	}
	count := allowed || p.Penalty
	for i, w := range ws {
		c := curs[i]
		if count {
			c.local++
			ests[i]++
			if c.every > 0 && !c.dirty {
				c.dirty = true
				sh.dirty = append(sh.dirty, counterKey{strings.Clone(key), w.Size, w.Start})
			}
		}
		rem := float64(usage[i].Limit) - ests[i]
		if rem < 0 {
			rem = 0
		}
		usage[i].Remaining = int64(rem)
		if !allowed {
			// Only a refusal needs Retry-After.
			usage[i].Retry = retryAfter(w, sh, key, c, usage[i].Limit, ns)
		}
	}
	return allowed
}

// retryAfter estimates when the window would admit again with no new
// requests: at the window's end for a fixed window, and for a sliding one
// when the previous window's fading weight lets the estimate drop below
// the limit.
func retryAfter(w Window, sh *shard, key string, cur *counter, limit int64, now int64) int64 {
	toEnd := float64(w.End*1e9-now) / 1e9
	if !w.Sliding {
		return max(int64(toEnd+0.999), 1)
	}
	size := float64(w.Size)
	curN := float64(cur.total())
	var prevN float64
	if prev := sh.counts[counterKey{key, w.Size, w.Start - w.Size}]; prev != nil {
		prevN = float64(prev.total())
	}
	elapsed := size - toEnd
	var wait float64
	switch {
	case curN < float64(limit) && prevN > 0:
		// prev·(size−e)/size + cur < limit  ⇔  e > size·(1 − (limit−cur)/prev)
		need := size * (1 - (float64(limit)-curN)/prevN)
		wait = max(need-elapsed, 0)
	case curN < float64(limit):
		wait = 0
	default:
		// Only the next window can admit: cur·(size−e)/size < limit.
		wait = toEnd + size*(1-float64(limit)/curN)
	}
	// The estimate must drop strictly below the limit: the first whole
	// second after wait.
	return max(int64(wait)+1, 1)
}

// get returns the counter for k, creating it (and making room) if needed.
// A new counter's key is a copy of k's, which may share the caller's
// buffer (see Take).
func (s *Store) get(sh *shard, k counterKey, expires, now int64) *counter {
	c := sh.counts[k]
	if c == nil {
		if len(sh.counts) >= s.perShard {
			s.evict(sh, now)
		}
		c = &counter{expires: expires}
		sh.counts[counterKey{strings.Clone(k.key), k.size, k.start}] = c
	}
	return c
}

// evict makes room in a full shard: first by dropping finished windows,
// then by dropping the smallest of a few counters sampled at random (Go's
// map order), the way Redis approximates LFU. A flood of distinct keys
// thus costs bounded memory, and what it pushes out is mostly the flood's
// own single-request counters.
func (s *Store) evict(sh *shard, now int64) {
	sh.sweep(now)
	if len(sh.counts) < s.perShard {
		return
	}
	var victim counterKey
	best := int64(-1)
	n := 0
	for k, c := range sh.counts {
		if t := c.total(); best < 0 || t < best {
			victim, best = k, t
		}
		if n++; n == 5 {
			break
		}
	}
	delete(sh.counts, victim)
	s.evicted.Add(1)
}

// sweep drops counters of finished windows, keeping memory bounded by the
// number of keys active in current windows.
func (sh *shard) sweep(now int64) {
	sh.lastSweep = now
	for k, c := range sh.counts {
		if c.expires <= now {
			delete(sh.counts, k)
		}
	}
	// Keys whose counter is gone leave the dirty list too, so it stays
	// bounded even if nothing collects reports.
	keep := sh.dirty[:0]
	for _, k := range sh.dirty {
		if c := sh.counts[k]; c != nil && c.dirty {
			keep = append(keep, k)
		}
	}
	clear(sh.dirty[len(keep):])
	sh.dirty = keep
}

// Report is one counter as a node tells its peers: its own count (never
// the peers' it heard) for one window of one key.
type Report struct {
	Key     string `msgpack:"k"`
	Size    int64  `msgpack:"w"`
	Start   int64  `msgpack:"s"`
	Expires int64  `msgpack:"x"`
	Count   int64  `msgpack:"c"`
}

// Collect hands emit each counter that changed and whose report interval
// has passed since it was last reported; emit returns false when it can
// take no more this round, and the rest wait for the next.
func (s *Store) Collect(now time.Time, emit func(Report) bool) {
	ns := now.UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		keep := sh.dirty[:0]
		stopped := false
		for _, k := range sh.dirty {
			c := sh.counts[k]
			if c == nil || !c.dirty {
				continue
			}
			if stopped || ns-c.sentAt < c.every {
				keep = append(keep, k)
				continue
			}
			if !emit(Report{Key: k.key, Size: k.size, Start: k.start, Expires: c.expires, Count: c.local}) {
				stopped = true
				keep = append(keep, k)
				s.deferred.Add(1)
				continue
			}
			c.dirty, c.sentAt = false, ns
		}
		clear(sh.dirty[len(keep):])
		sh.dirty = keep
		sh.mu.Unlock()
		if stopped {
			// Count what stays behind in the other shards too, cheaply:
			// the deferred metric is a lower bound.
			return
		}
	}
}

func (s *Store) slot(node string) uint16 {
	s.nodesMu.RLock()
	i, ok := s.slots[node]
	s.nodesMu.RUnlock()
	if ok {
		return i
	}
	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	if i, ok := s.slots[node]; ok {
		return i
	}
	i = uint16(len(s.nodes))
	s.nodes = append(s.nodes, node)
	s.slots[node] = i
	return i
}

func (s *Store) nodeName(slot uint16) string {
	s.nodesMu.RLock()
	defer s.nodesMu.RUnlock()
	return s.nodes[slot]
}

// Merge records reports from a peer. A count only grows within a window,
// so an older report arriving late (UDP may reorder) never lowers it.
func (s *Store) Merge(from string, now time.Time, reports []Report) {
	slot := s.slot(from)
	ns, sec := now.UnixNano(), now.Unix()
	for _, r := range reports {
		if r.Expires <= sec || r.Count <= 0 || r.Size <= 0 || r.Expires > r.Start+2*r.Size+60 ||
			len(r.Key) > maxKeyLen+8 {
			continue
		}
		sh := s.shardOf(r.Key)
		sh.mu.Lock()
		c := s.get(sh, counterKey{r.Key, r.Size, r.Start}, r.Expires, sec)
		found := false
		for i := range c.peers {
			p := &c.peers[i]
			if p.slot != slot {
				continue
			}
			found = true
			if r.Count > p.n {
				dt := ns - p.at
				if c.every > 0 && (dt > c.every || dt <= 0) {
					dt = c.every
				}
				if dt > 0 {
					p.rate = float64(r.Count-p.n) / float64(dt)
				}
				c.peerSum += r.Count - p.n
				p.n = r.Count
			} else {
				p.rate = 0
			}
			p.at = ns
		}
		if !found {
			p := peerCount{slot: slot, n: r.Count, at: ns}
			if c.every > 0 {
				p.rate = float64(r.Count) / float64(c.every)
			}
			c.peers = append(c.peers, p)
			c.peerSum += r.Count
		}
		sh.mu.Unlock()
	}
}

// Forget drops everything a peer reported: it has left or been declared
// dead, so its counts age out and the survivors count only each other.
func (s *Store) Forget(node string) {
	s.nodesMu.RLock()
	slot, ok := s.slots[node]
	s.nodesMu.RUnlock()
	if !ok {
		return
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, c := range sh.counts {
			for j := 0; j < len(c.peers); j++ {
				if c.peers[j].slot == slot {
					c.peerSum -= c.peers[j].n
					c.peers = append(c.peers[:j], c.peers[j+1:]...)
					j--
				}
			}
		}
		sh.mu.Unlock()
	}
}

// Counts is one window of one key as this node sees it.
type Counts struct {
	Size  int64            `json:"window_size"`
	Start int64            `json:"window_start"`
	Total int64            `json:"count"`
	Nodes map[string]int64 `json:"nodes"`
}

// Counts returns the counts of key in the window of size starting at
// start: this node's own (under self) and each peer's last report.
func (s *Store) Counts(key, self string, size, start int64) Counts {
	key = canonicalKey(key)
	sh := s.shardOf(key)
	out := Counts{Size: size, Start: start, Nodes: map[string]int64{}}
	sh.mu.Lock()
	c := sh.counts[counterKey{key, size, start}]
	var peers []peerCount
	if c != nil {
		out.Total = c.total()
		out.Nodes[self] = c.local
		peers = append(peers, c.peers...)
	}
	sh.mu.Unlock()
	for _, p := range peers {
		out.Nodes[s.nodeName(p.slot)] = p.n
	}
	return out
}

// Stats are the store's gauges and counters for /status.
type Stats struct {
	Counters int   `json:"counters"`
	Evicted  int64 `json:"evicted"`
	Deferred int64 `json:"deferred_reports"`
	Live     int   `json:"live_members"`
	Size     int   `json:"cluster_size"`
}

// Stats reports the store's size and the membership it enforces with.
func (s *Store) Stats() Stats {
	return Stats{Counters: s.Len(), Evicted: s.evicted.Load(), Deferred: s.deferred.Load(),
		Live: int(s.live.Load()), Size: int(s.size.Load())}
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
