// Package cow is an immutable string-keyed map split into shards, for
// indexes the proxy reads without locks while updates derive new ones:
// successive maps share every shard an update did not touch.
package cow

import (
	"hash/maphash"
	"maps"
)

// shards is the number of shards of a Map. At 1,000,000 keys a shard
// holds about 4,000, so one change copies a few hundred kilobytes instead
// of the whole map; at 10,000 keys, about 40.
const shards = 256

var seed = maphash.MakeSeed()

func shardOf(k string) int { return int(maphash.String(seed, k) & (shards - 1)) }

// Map is an immutable map; a nil *Map is an empty map.
type Map[V any] struct {
	shards [shards]map[string]V
}

// Get returns the value under k.
func (m *Map[V]) Get(k string) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	v, ok := m.shards[shardOf(k)][k]
	return v, ok
}

// Each calls fn for every key and value, in no particular order.
func (m *Map[V]) Each(fn func(k string, v V)) {
	if m == nil {
		return
	}
	for _, sh := range m.shards {
		for k, v := range sh {
			fn(k, v)
		}
	}
}

// Edit derives a new Map from m; shards are cloned on their first write,
// so m is never modified.
type Edit[V any] struct {
	m      *Map[V]
	cloned [shards]bool
}

// Edit starts deriving a map from m (which may be nil).
func (m *Map[V]) Edit() *Edit[V] {
	n := &Map[V]{}
	if m != nil {
		n.shards = m.shards
	}
	return &Edit[V]{m: n}
}

// Sized starts a new map that will hold about n keys, with every shard
// made to its share of them: growing a map doubles and rehashes it, and
// building the credential index of 1,000,000 consumers that way was
// about a second and a half of a restart.
func Sized[V any](n int) *Edit[V] {
	e := &Edit[V]{m: &Map[V]{}}
	per := n/shards + n/shards/8 + 1 // hashing spreads keys unevenly
	for i := range e.m.shards {
		e.m.shards[i] = make(map[string]V, per)
		e.cloned[i] = true
	}
	return e
}

func (e *Edit[V]) shard(k string) map[string]V {
	i := shardOf(k)
	if !e.cloned[i] {
		if e.m.shards[i] == nil {
			e.m.shards[i] = map[string]V{}
		} else {
			e.m.shards[i] = maps.Clone(e.m.shards[i])
		}
		e.cloned[i] = true
	}
	return e.m.shards[i]
}

// Set puts v under k.
func (e *Edit[V]) Set(k string, v V) { e.shard(k)[k] = v }

// Del removes k.
func (e *Edit[V]) Del(k string) {
	if _, ok := e.m.Get(k); ok {
		delete(e.shard(k), k)
	}
}

// Get reads the map as edited so far.
func (e *Edit[V]) Get(k string) (V, bool) { return e.m.Get(k) }

// Done returns the new map; the edit must not be used afterwards.
func (e *Edit[V]) Done() *Map[V] { return e.m }
