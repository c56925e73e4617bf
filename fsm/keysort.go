package fsm

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm/keytree"
)

// sortByKey returns xs ordered by key, ties by tie (which must order
// every pair key leaves equal), as slices.SortFunc on strings.Compare
// would, only faster on an index's keys. Those share long prefixes
// (every consumer's unique key starts "consumers\x00username\x00"), so
// comparing two reads both strings from memory and then a score of equal
// bytes: sorting a restore's unique keys at 1,000,000 consumers was about
// 3 s of CPU, nearly all of it in the comparison.
//
// A key's group is the key up to and including its groupZeros-th zero
// byte (its kind, or its kind and field). Each element is sorted as a
// small item: the group's rank among the groups in the high 16 bits,
// then the 14 bytes after the group's prefix (zero-padded). That order
// agrees with the keys' own, since keys in one group share the prefix
// and the groups are ranked in the prefixes' order; only items equal in
// all of it are compared as strings.
func sortByKey[T any](xs []T, groupZeros int, key func(*T) string, tie func(a, b *T) int) []T {
	type item struct {
		p, q uint64
		i    int
	}
	items := make([]item, len(xs))
	groups := map[string]uint64{}
	cut := make([]int, len(xs)) // where each key's group prefix ends
	for i := range xs {
		k := key(&xs[i])
		end := keytree.GroupEnd(k, groupZeros)
		cut[i] = end
		groups[k[:end]] = 0
	}
	if len(groups) > 1<<16 {
		// Not an index's keys: sort them as they are.
		out := slices.Clone(xs)
		slices.SortStableFunc(out, func(a, b T) int {
			if c := strings.Compare(key(&a), key(&b)); c != 0 {
				return c
			}
			return tie(&a, &b)
		})
		return out
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for r, g := range names {
		groups[g] = uint64(r) << 48
	}
	for i := range xs {
		k := key(&xs[i])
		var b [16]byte
		copy(b[2:], k[cut[i]:])
		items[i] = item{groups[k[:cut[i]]] | binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), i}
	}
	items = sortInHalves(items, func(a, b item) int {
		switch {
		case a.p != b.p:
			return cmp.Compare(a.p, b.p)
		case a.q != b.q:
			return cmp.Compare(a.q, b.q)
		}
		x, y := &xs[a.i], &xs[b.i]
		if c := strings.Compare(key(x), key(y)); c != 0 {
			return c
		}
		return tie(x, y)
	})
	out := make([]T, len(xs))
	for j, it := range items {
		out[j] = xs[it.i]
	}
	return out
}
