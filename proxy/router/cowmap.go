package router

import (
	"hash/maphash"
	"maps"
)

// cowShards is the number of shards of a cowMap. With 10,000 routes a
// shard holds about 150 keys, so an update copies a few kilobytes instead
// of the whole map.
const cowShards = 64

var cowSeed = maphash.MakeSeed()

func shardOf(k string) int { return int(maphash.String(cowSeed, k) & (cowShards - 1)) }

// cowMap is an immutable string-keyed map split into shards. Successive
// routers share every shard an update did not touch; a nil *cowMap is an
// empty map.
type cowMap[V any] struct {
	shards [cowShards]map[string]V
}

func (m *cowMap[V]) get(k string) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	v, ok := m.shards[shardOf(k)][k]
	return v, ok
}

// cowEdit derives a new cowMap from an old one; shards are cloned on their
// first write, so the old map is never modified.
type cowEdit[V any] struct {
	m      *cowMap[V]
	cloned [cowShards]bool
}

func (m *cowMap[V]) edit() *cowEdit[V] {
	n := &cowMap[V]{}
	if m != nil {
		n.shards = m.shards
	}
	return &cowEdit[V]{m: n}
}

func (e *cowEdit[V]) shard(k string) map[string]V {
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

func (e *cowEdit[V]) set(k string, v V) { e.shard(k)[k] = v }

func (e *cowEdit[V]) del(k string) {
	if _, ok := e.m.get(k); ok {
		delete(e.shard(k), k)
	}
}

func (e *cowEdit[V]) get(k string) (V, bool) { return e.m.get(k) }

// done returns the new map; the edit must not be used afterwards.
func (e *cowEdit[V]) done() *cowMap[V] { return e.m }
