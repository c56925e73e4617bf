package router

import (
	"unsafe"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// A path index holds entries under their key: the prefix path, the literal
// every match of a regex path starts with, or "" for a route without
// paths. An entry can only match a request whose normalised path starts
// with its key, so the candidates for a request are the values of the keys
// along its path: one walk down a radix tree instead of a scan of every
// entry. Each value is a slice of entries in priority order, never
// modified once published. The tree is persistent (path-copying), so an
// update copies the few nodes above the keys it touches and successive
// routers share the rest.
type pathIndex = *iradix.Tree

// buildIndex indexes es, which are in priority order.
func buildIndex(es []*entry) pathIndex {
	if len(es) == 0 {
		return nil
	}
	groups := map[string][]*entry{}
	var keys []string
	for _, e := range es {
		if _, ok := groups[e.prefix]; !ok {
			keys = append(keys, e.prefix)
		}
		groups[e.prefix] = append(groups[e.prefix], e)
	}
	txn := iradix.New().Txn()
	for _, k := range keys {
		txn.Insert([]byte(k), groups[k])
	}
	return txn.Commit()
}

// updateIndex returns idx without the entries del and with the entries
// add (both in priority order); idx itself is unchanged.
func updateIndex(idx pathIndex, del, add []*entry) pathIndex {
	if len(del) == 0 && len(add) == 0 {
		return idx
	}
	if idx == nil {
		idx = iradix.New()
	}
	txn := idx.Txn()
	seen := map[string]bool{}
	for _, list := range [][]*entry{del, add} {
		for _, e := range list {
			k := e.prefix
			if seen[k] {
				continue
			}
			seen[k] = true
			var cur []*entry
			if v, ok := idx.Get([]byte(k)); ok {
				cur = v.([]*entry)
			}
			if next := mergeEntries(cur, withKey(del, k), withKey(add, k)); len(next) == 0 {
				txn.Delete([]byte(k))
			} else {
				txn.Insert([]byte(k), next)
			}
		}
	}
	if out := txn.Commit(); out.Len() > 0 {
		return out
	}
	return nil
}

func withKey(es []*entry, k string) []*entry {
	var out []*entry
	for _, e := range es {
		if e.prefix == k {
			out = append(out, e)
		}
	}
	return out
}

// candidates appends to lists the entry lists of idx whose key is a
// prefix of path.
func candidates(idx pathIndex, path string, lists [][]*entry) [][]*entry {
	if idx == nil {
		return lists
	}
	// The walk only reads the bytes; a conversion would allocate for paths
	// longer than 32 bytes.
	b := unsafe.Slice(unsafe.StringData(path), len(path))
	idx.Root().WalkPath(b, func(_ []byte, v any) bool {
		lists = append(lists, v.([]*entry))
		return false
	})
	return lists
}

// firstMatch tries the entries of lists (each in priority order) merged
// into one priority order, and returns the first that matches.
func firstMatch(lists [][]*entry, in *input) (Match, bool) {
	for {
		best := -1
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || compareEntries(l[0], lists[best][0]) < 0) {
				best = i
			}
		}
		if best < 0 {
			return Match{}, false
		}
		e := lists[best][0]
		lists[best] = lists[best][1:]
		if m, ok := e.match(in); ok {
			return m, true
		}
	}
}
